"""A backtest's period when none was given, and what to say when the period held no prices.

With no period, Blankly backtests the last year (``to: 1y``, blankly.json's default);
a strategy that reads a price file (``PriceReader("./GOOG-USD-1d.csv", ...)``) then
finds no prices when the file is older than that. So when the model's code names a
price file (a CSV with a time column, taken into the model by the exporter) and no
period was given, the period is the file's: its first and last time. And when a
backtest fails for want of prices, its error says which period was tried and how to
give another, in the face's words, once.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Optional

from ..hints import NOTEBOOK, Hints
from ..modelzip import DEFAULT_DEPLOY_SETTINGS

if TYPE_CHECKING:
    from ..export import Bundle

PERIOD_KEYS = ("to", "start_date", "end_date")
DEFAULT_PERIOD = DEFAULT_DEPLOY_SETTINGS["backtest_args"]  # {"to": "1y"}
NO_DATA = "No cached or downloaded data available"  # Blankly's words for a period without prices
TIME_COLUMNS = ("time", "timestamp", "date", "datetime")


@dataclass(frozen=True)
class DataPeriod:
    """The span of a price file: its first and last time, as dates (UTC)."""

    file: str
    start: str
    end: str


def has_period(args: Optional[dict]) -> bool:
    return bool(args) and any(args.get(key) not in (None, "") for key in PERIOD_KEYS)  # type: ignore[union-attr]


def fill_period(args: Optional[dict], bundle: "Bundle") -> tuple[Optional[dict], Optional[str]]:
    """The backtest arguments to send, and a note when their period was taken from the price file.

    ``args`` are the ones the face gave (None: the model's blankly.json decides). Given with
    a period, they are kept; with none (or blankly.json's default ``to: 1y``) and a price
    file the code reads, its first and last dates become ``start_date`` and ``end_date``."""
    base = dict(args) if args is not None else dict(bundle.manifest.get("backtest_args") or {})
    defaulted = args is None and {k: base.get(k) for k in PERIOD_KEYS if k in base} == DEFAULT_PERIOD
    if has_period(base) and not defaulted:
        return args, None
    found = data_period(bundle)
    if found is None:
        return args, None
    filled = {key: value for key, value in base.items() if key not in PERIOD_KEYS}
    filled.update(start_date=found.start, end_date=found.end)
    return filled, (f"No backtest period given: backtesting {found.file}'s, {found.start} to {found.end}")


def data_period(bundle: "Bundle") -> Optional[DataPeriod]:
    """The span of the first price file the model's code names (a CSV the model holds whose first
    column of a time-like name reads as times); None when there is none."""
    for item in bundle.files:
        name = os.path.basename(item.path)
        if not name.lower().endswith(".csv") or name not in bundle.script:
            continue
        try:
            with bundle.open(item.path) as handle:
                span = csv_span(handle)
        except OSError:
            continue
        if span is not None:
            return DataPeriod(name, *span)
    return None


def csv_span(handle: IO[bytes]) -> Optional[tuple[str, str]]:
    """(first date, last date) of a CSV's time column, reading its head and its tail only."""
    head = handle.read(64 * 1024).decode("utf-8", "replace").splitlines()
    if len(head) < 2:
        return None
    columns = [c.strip().lower() for c in next(csv.reader([head[0]]))]
    index = next((columns.index(c) for c in TIME_COLUMNS if c in columns), None)
    if index is None:
        return None
    size = handle.seek(0, io.SEEK_END)
    handle.seek(max(0, size - 64 * 1024))
    tail = [line for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    first, last = _date(_cell(head[1], index)), _date(_cell(tail[-1], index))
    return (first, last) if first and last and first <= last else None


def _cell(line: str, index: int) -> str:
    cells = next(csv.reader([line]), [])
    return cells[index].strip() if index < len(cells) else ""


def _date(value: str) -> Optional[str]:
    """``1268179200`` (epoch s or ms) or an ISO time -> ``2010-03-10``; None when it reads as neither."""
    try:
        number = float(value)
    except ValueError:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            return None
    if number > 1e11:  # milliseconds
        number /= 1000
    try:
        return datetime.fromtimestamp(number, tz=timezone.utc).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def empty_period_error(error: Optional[str], args: Any, hints: Hints = NOTEBOOK) -> Optional[str]:
    """The error to show when Blankly found no prices in the period: which period was tried and
    how to give one within the data; None for any other error."""
    if not error or NO_DATA not in error:
        return None
    args = args if isinstance(args, dict) else {}
    if args.get("start_date") or args.get("end_date"):
        tried = f"{args.get('start_date') or '?'} to {args.get('end_date') or '?'}"
    elif args.get("to"):
        tried = f"the last {args['to']} (to: {args['to']})"
    else:
        tried = "none given"
    return (f"no prices in the backtest period ({tried}): give a start and an end within your data "
            f"with {hints.period}")
