"""The keyword arguments of Blankly's ``strategy.backtest()``, read the same way by every face.

The magics' and the CLI's ``--args/--start/--end/--to/--initial`` and the panel's
fields all come through :func:`backtest_args`, which says what Blankly would refuse
before anything is uploaded.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, Iterable, Optional, Union

from ..errors import BlanklyError

# Blankly's time_interval_to_seconds: a whole number and one unit ("mo" is read as "M").
SPAN = re.compile(r"[0-9]+(mo|[smhdwMyDcl])")
ASSET = re.compile(r"[A-Z0-9][A-Z0-9._-]*")
BALANCE_EXAMPLE = "write e.g. USD=10000 (several: USD=10000, BTC=0.5)"
ARGS_EXAMPLE = "--args '{\"to\": \"1y\"}'"

Balances = dict[str, Union[int, float]]


class BacktestArgsError(BlanklyError, ValueError):
    """A backtest period or balance Blankly's ``strategy.backtest()`` would refuse, caught before upload."""


def parse_balances(initial: Union[str, Iterable[str]]) -> Balances:
    """``"USD=10000, btc=0.5"`` (or ``["USD=10000", "BTC=0.5"]``) -> ``{"USD": 10000, "BTC": 0.5}``.

    Asset names are upper-cased: Blankly's account keys are ("USD", "BTC"), and a
    lower-case key would be an asset no exchange holds. Items split on commas or
    semicolons, so the panel's one field and repeated ``--initial`` read the same."""
    chunks = [initial] if isinstance(initial, str) else list(initial)
    balances: Balances = {}
    for chunk in chunks:
        for item in str(chunk).replace(";", ",").split(","):
            item = item.strip()
            if item:
                asset, amount = _balance(item)
                if asset in balances:
                    raise BacktestArgsError(f"initial balance of {asset} given twice: give each asset once")
                balances[asset] = amount
    return balances


def _balance(item: str) -> tuple[str, Union[int, float]]:
    asset, sep, amount = item.partition("=")
    asset = asset.strip().upper()
    try:
        number: Optional[float] = float(amount) if sep else None
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or not ASSET.fullmatch(asset):
        raise BacktestArgsError(f"initial balance {item!r} is not ASSET=AMOUNT: {BALANCE_EXAMPLE}")
    if number < 0:
        raise BacktestArgsError(f"initial balance {item!r} is negative: give an amount of 0 or more")
    return asset, int(number) if number.is_integer() else number


def _iso(value: Any) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None  # another form pandas reads ("03/06/2018"): Blankly checks it


def check_period(args: dict) -> None:
    """Blankly's rule, said before upload: ``to`` (a span back from now), or both
    ``start_date`` and ``end_date``; a start after its end is a typo."""
    to, start, end = args.get("to"), args.get("start_date"), args.get("end_date")
    if to is not None and (start is not None or end is not None):
        raise BacktestArgsError("backtest period: give a start and an end date, or 'to' (a span like 1y), not both")
    if (start is None) != (end is None):
        raise BacktestArgsError(
            "backtest period: give both a start and an end date (like 2021-01-01), or 'to' (a span like 1y)"
        )
    if isinstance(to, str) and not SPAN.fullmatch(to):
        raise BacktestArgsError(f"backtest period: 'to' takes a span like 1y, 6M or 30d, not {to!r}")
    first, last = _iso(start), _iso(end)
    try:
        backwards = first is not None and last is not None and first >= last
    except TypeError:  # one with a time zone, one without: Blankly compares them its way
        backwards = False
    if backwards:
        raise BacktestArgsError(f"backtest period: the start {start} is not before the end {end}")


def backtest_args(
    start: Optional[str] = None,
    end: Optional[str] = None,
    to: Optional[str] = None,
    initial: Union[str, Iterable[str]] = (),
    extra: Optional[dict] = None,
) -> dict:
    """The keyword arguments of Blankly's ``strategy.backtest()``.

    Empty strings count as not given; a shortcut replaces the same key of ``extra``;
    balances become ``initial_values``. ``{}`` when nothing was given. Raises
    BacktestArgsError (a ValueError) with one line saying what to fix."""
    args = dict(extra or {})
    for key, value in (("start_date", start), ("end_date", end), ("to", to)):
        value = value.strip() if isinstance(value, str) else value
        if value is not None and value != "":
            args[key] = value
    balances = parse_balances(initial or ())
    if balances:
        args["initial_values"] = balances
    check_period(args)
    return args


def parse_args_json(text: str) -> dict:
    """``--args``: a JSON object of backtest keyword arguments."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BacktestArgsError(f"--args is not valid JSON ({exc.msg}): give an object, e.g. {ARGS_EXAMPLE}") from None
    if not isinstance(value, dict):
        raise BacktestArgsError(f"--args must be a JSON object, e.g. {ARGS_EXAMPLE}, not {type(value).__name__}")
    return value


def options_given(args_json: Optional[str], start: Optional[str], end: Optional[str], to: Optional[str],
                  initial: Optional[Iterable[str]]) -> bool:
    return args_json is not None or initial is not None or (to, start, end) != (None, None, None)


def from_options(args_json: Optional[str] = None, start: Optional[str] = None, end: Optional[str] = None,
                 to: Optional[str] = None, initial: Optional[Iterable[str]] = None) -> Optional[dict]:
    """``--args`` JSON with the shortcuts over it, as the magics and the CLI read them; None when none
    was given (the model's own blankly.json then decides)."""
    if not options_given(args_json, start, end, to, initial):
        return None
    extra = parse_args_json(args_json) if args_json is not None else None
    return backtest_args(start=start, end=end, to=to, initial=initial or (), extra=extra)
