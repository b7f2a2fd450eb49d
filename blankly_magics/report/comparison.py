"""Several completed backtests side by side: their metrics as one DataFrame, their equity curves overlaid."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import pandas as pd

from ..results import Shown, esc, format_time, format_value
from . import measures
from .document import ReportError, chart_html, write_page
from .figure import overlay_figure, png

if TYPE_CHECKING:
    from ..results import BacktestResult

BENCHMARK_RETURN = "Benchmark return (%)"
TRADES = "Trades"
INITIAL = "Initial value"
FINAL = "Final value"
LABEL_WIDTH = 40  # characters of a version's description in a column label


def label(result: "BacktestResult") -> str:
    """A column's name: the version's number and description, and when the backtest ran."""
    version = result.version_info()
    description = " ".join(str(version.get("description") or result.description or "").split())
    if len(description) > LABEL_WIDTH:
        description = description[: LABEL_WIDTH - 1] + "\u2026"
    number = version.get("number")
    head = f"v{number}" if number is not None else f"version {str(result.version_id or '')[:8]}"
    when = format_time(result.created_at or result.started_at)
    return f"{head} {description} ({when})" if description else f"{head} ({when})"


def _labels(results: Sequence["BacktestResult"]) -> list[str]:
    names = [label(r) for r in results]
    return [f"{name} [{r.backtest_id[:8]}]" if names.count(name) > 1 else name for name, r in zip(names, results)]


def _column(result: "BacktestResult") -> dict[str, Any]:
    report = result.report
    column: dict[str, Any] = dict(report.table["Strategy"])
    column[BENCHMARK_RETURN] = report.table.at[measures.RETURN, "Benchmark"]
    column[TRADES] = len(report.trades)
    column[INITIAL] = result.initial_account_value
    column[FINAL] = result.final_account_value
    for name, value in result.metrics.items():
        column.setdefault(name, value if isinstance(value, (int, float)) and not isinstance(value, bool) else None)
    return column


@dataclass(repr=False)
class Comparison(Shown):
    """``table``: one row per metric, one column per backtest (labelled by version and date);
    ``curves``: each backtest's account value by time, under the same labels."""

    table: pd.DataFrame
    curves: dict
    backtest_ids: list
    quote: Optional[str] = None
    _png: Optional[bytes] = field(default=None, compare=False)

    @classmethod
    def of(cls, results: Sequence["BacktestResult"]) -> "Comparison":
        for result in results:
            if not result.ok:
                reason = f" ({result.error})" if result.error else ""
                raise ReportError(f"backtest {result.backtest_id} is {result.status}{reason}: "
                                  "only completed backtests can be compared")
        names = _labels(results)
        table = pd.DataFrame({name: pd.Series(_column(r), dtype=float) for name, r in zip(names, results)})
        order = [*measures.ROWS, BENCHMARK_RETURN, TRADES, INITIAL, FINAL]
        table = table.reindex(order + [row for row in table.index if row not in order])
        table.index.name = "metric"
        quotes = {r.quote_asset for r in results}
        return cls(table=table, curves={name: r.report.values for name, r in zip(names, results)},
                   backtest_ids=[r.backtest_id for r in results], quote=quotes.pop() if len(quotes) == 1 else None)

    def figure(self) -> Any:
        """The equity curves overlaid (matplotlib Figure, Agg canvas)."""
        return overlay_figure(self.curves, title="Account value", quote=self.quote)

    def png(self) -> Optional[bytes]:
        """The overlay as PNG bytes (drawn once), or None without matplotlib."""
        if self._png is None and any(len(c) >= 2 for c in self.curves.values()):
            try:
                self._png = png(self.figure())
            except ImportError:
                return None
        return self._png

    def _table_html(self) -> str:
        head = "".join(f"<th>{esc(c)}</th>" for c in self.table.columns)
        rows = "".join(
            f"<tr><th>{esc(name)}</th>" + "".join(
                f"<td class='n' style='text-align:right'>{'' if v != v else esc(format_value(v))}</td>" for v in row)
            + "</tr>"
            for name, row in zip(self.table.index, self.table.itertuples(index=False, name=None))
        )
        head = f"<thead><tr><th>Metric</th>{head}</tr></thead>"
        return f"<table class='blankly-compare'>{head}<tbody>{rows}</tbody></table>"

    def to_html(self, chart: bool = True) -> str:
        parts = [f"<div class='blankly-compare'><p><b>{len(self.backtest_ids)} backtests compared</b></p>",
                 self._table_html()]
        if chart:
            parts.append(chart_html(self.png(), alt="equity curves overlaid"))
        return "".join(parts) + "</div>"

    def to_text(self) -> str:
        rows = [["", *self.table.columns]] + [
            [str(name), *("" if v != v else format_value(v) for v in row)]
            for name, row in zip(self.table.index, self.table.itertuples(index=False, name=None))]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                 for r in rows]
        return "\n".join([f"{len(self.backtest_ids)} backtests compared"] + lines)

    def save(self, path: Union[str, Path]) -> Path:
        """The comparison as one self-contained HTML file."""
        return write_page(path, f"{len(self.backtest_ids)} backtests compared",
                          f"<h1>{len(self.backtest_ids)} backtests compared</h1>" + self.to_html())

    _repr_pretty_ = Shown._repr_pretty_

    def __repr__(self) -> str:
        return f"Comparison(backtests={self.backtest_ids!r}, metrics={len(self.table)})"
