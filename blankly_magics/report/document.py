"""The report as it reads: the HTML below a notebook cell, the self-contained file ``r.save()`` writes,
and the text a terminal shows.

Everything is inline (styles, the chart as a PNG data URL): the file opens anywhere, with no network
and no script. Tables are plain ``<table>``s, so a static notebook viewer shows them as they are.
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

import pandas as pd

from ..errors import BlanklyError
from ..files import atomic_write
from ..results import esc, format_time, format_value
from .measures import ROWS

if TYPE_CHECKING:
    from ..results import BacktestResult
    from .backtest import BacktestReport


class ReportError(BlanklyError):
    """A report that cannot be made or written."""


SHOWN_TRADES = 10  # rows of the folded trades table below a cell
FILE_TRADES = 10000  # rows of the trades table in a saved file
FILE_DPI = 150
TRADE_HEAD = ("time", "symbol", "side", "size", "price", "order_id", "type", "status")
STYLE = """
body{font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2328;
max-width:980px;margin:24px auto;padding:0 16px}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:24px 0 8px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:4px 0}th,td{padding:3px 10px;border-bottom:1px solid #eaeef2}
th{text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.group th{background:#f6f8fa;color:#57606a;font-weight:600}
img{max-width:100%;height:auto}pre{background:#f6f8fa;padding:8px;overflow:auto}.muted{color:#57606a}
"""


def _cell(value: Any) -> str:
    return esc(_plain(value))


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metrics_rows(result: "BacktestResult", report: "BacktestReport") -> list[tuple[str, Any, Any]]:
    """(name, strategy, benchmark): the measures both have, then Blankly's own (strategy only: the
    benchmark's cell is empty text)."""
    rows = [(name, report.table.at[name, "Strategy"], report.table.at[name, "Benchmark"]) for name in ROWS]
    return rows + [(name, value, "") for name, value in result.metrics.items() if name not in ROWS]


def metrics_html(result: "BacktestResult", report: "BacktestReport") -> str:
    benchmark = esc(report.benchmark_label) if report.benchmark is not None else "Benchmark (no prices)"
    head = f"<tr><th>Metric</th><th>Strategy</th><th>{benchmark}</th></tr>"
    body = []
    for n, (name, mine, theirs) in enumerate(metrics_rows(result, report)):
        if n == len(ROWS):
            body.append("<tr class='group'><th colspan='3'>Blankly's metrics</th></tr>")
        body.append(f"<tr><th>{esc(name)}</th><td class='n'>{_cell(mine)}</td><td class='n'>{_cell(theirs)}</td></tr>")
    return f"<table class='blankly-metrics'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def trades_html(trades: pd.DataFrame, limit: int) -> str:
    columns = [c for c in TRADE_HEAD if c in trades.columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td{' class=n' if _numeric(v) else ''}>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in trades[columns].head(limit).itertuples(index=False, name=None)
    )
    return f"<table class='blankly-trades'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def folded_trades_html(trades: pd.DataFrame, limit: int = SHOWN_TRADES) -> str:
    """The trades folded: their count in the summary, the first ``limit`` rows inside."""
    if trades.empty:
        return "<p>Trades: <b>0</b></p>"
    shown = f"first {limit} of {len(trades)}" if len(trades) > limit else f"all {len(trades)}"
    return (f"<details><summary>Trades: <b>{len(trades)}</b> ({shown}; <code>r.trades</code> has them all)</summary>"
            f"{trades_html(trades, limit)}</details>")


CHART_ALT = "equity curve"


def chart_html(data: Optional[bytes], alt: str = CHART_ALT) -> str:
    if not data:
        return ""
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'/>"


def period_text(result: "BacktestResult") -> str:
    """"2010-06-01 00:00 to 2013-03-01 00:00" (UTC), or "" when the result has no period."""
    return result._period()


def cell_html(result: "BacktestResult", report: "BacktestReport", chart: bool) -> str:
    """Below a cell: the metrics side by side, the period, the chart, the trades folded."""
    period = period_text(result)
    parts = [metrics_html(result, report)]
    if period:
        parts.append(f"<p>Period: {esc(period)}</p>")
    if chart:
        parts.append(chart_html(report.png()))
    parts.append(folded_trades_html(report.trades))
    return "".join(parts)


def _pairs_html(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs if v not in (None, "", {}, []))
    return f"<table>{rows}</table>"


def _json_html(value: Any) -> str:
    return f"<pre>{esc(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"


def about(result: "BacktestResult") -> list[tuple[str, Any]]:
    """What the backtest was: model, version, description, period, symbols, money."""
    version = result.version_info()
    number = f"version {version['number']}: " if version.get("number") is not None else ""
    money = (f"{format_value(result.initial_account_value)} -> {format_value(result.final_account_value)} "
             f"{result.quote_asset or ''}").strip()
    return [("backtest", result.backtest_id), ("status", result.status), ("model", result.model_id),
            ("version", f"{number}{version.get('description') or ''} ({result.version_id})" if number
             else result.version_id),
            ("description", result.description), ("period", period_text(result)),
            ("symbols", ", ".join(result.symbols or [])), ("exchange", result.exchange),
            ("account value", money), ("ran", format_time(result.started_at))]


def report_body(result: "BacktestResult", report: "BacktestReport") -> str:
    """The whole report, for a page of its own."""
    sections = [f"<h1>Backtest {esc(result.backtest_id)}</h1>", f"<p class='muted'>{esc(result.headline())}</p>",
                _pairs_html(about(result)), "<h2>Metrics</h2>", metrics_html(result, report),
                "<h2>Account value, buy and hold, drawdown</h2>",
                chart_html(report.png(FILE_DPI)), "<h2>Backtest arguments</h2>", _json_html(result.args)]
    if result.parameters:
        sections += ["<h2>Parameters</h2>", _json_html(result.parameters)]
    trades = report.trades
    more = f" (the first {FILE_TRADES})" if len(trades) > FILE_TRADES else ""
    sections += [f"<h2>Trades: {len(trades)}{more}</h2>", trades_html(trades, FILE_TRADES) if len(trades) else ""]
    return "".join(sections)


def document(title: str, body: str) -> str:
    """A whole HTML page: inline style, no script, nothing fetched."""
    from .. import __version__

    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    footer = f"<p class='muted'>Written by blankly_magics {esc(__version__)} on {written}.</p>"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>{body}{footer}</body></html>")


def write_page(path: Union[str, Path], title: str, body: str) -> Path:
    """Write a page to ``path`` (a new file, or replacing one; never half-written)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ReportError(f"{target} is a folder; give the report a file name, e.g. {target / 'report.html'}")
    content = document(title, body).encode("utf-8")
    try:
        return atomic_write(target, content, mode=0o644)  # a file to share: readable by others
    except OSError as exc:
        raise ReportError(f"cannot write the report to {target}: {exc.strerror or exc}; "
                          "pick a folder that exists and that you can write to") from None


def save(result: "BacktestResult", report: "BacktestReport", path: Union[str, Path]) -> Path:
    """Write the backtest's report to ``path`` as one self-contained HTML file."""
    return write_page(path, f"Backtest {result.backtest_id}", report_body(result, report))


def metrics_text(result: "BacktestResult", report: "BacktestReport") -> str:
    """The metrics side by side as aligned text (a terminal's table)."""
    benchmark = report.benchmark_label if report.benchmark is not None else "Benchmark (no prices)"
    rows = [("", "Strategy", benchmark)] + [(name, _plain(mine), _plain(theirs))
                                            for name, mine, theirs in metrics_rows(result, report)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"  {a.ljust(widths[0])}  {b.rjust(widths[1])}  {c.rjust(widths[2])}".rstrip() for a, b, c in rows]
    if len(lines) > len(ROWS) + 1:
        lines.insert(len(ROWS) + 1, "  Blankly's metrics:")
    return "\n".join(lines)


def trades_text(trades: pd.DataFrame, limit: int = SHOWN_TRADES) -> str:
    if trades.empty:
        return "Trades: 0"
    columns = [c for c in TRADE_HEAD if c in trades.columns and c not in ("type", "status")]
    rows = [columns] + [[_plain(v) for v in row] for row in trades[columns].head(limit).itertuples(index=False)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    shown = f" (first {limit})" if len(trades) > limit else ""
    body = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([f"Trades: {len(trades)}{shown}"] + body)


def _plain(value: Any) -> str:
    """A cell's text: times to the minute (UTC), numbers short, a missing number "n/a"."""
    if value is pd.NaT:
        return ""
    if isinstance(value, pd.Timestamp):
        return format_time(value.timestamp())
    return format_value(value)
