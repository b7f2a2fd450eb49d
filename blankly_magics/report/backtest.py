"""One completed backtest's report: its series, the side-by-side table and the chart, computed once."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import pandas as pd

from . import measures, series
from .figure import png, report_figure

if TYPE_CHECKING:
    from ..results import BacktestResult


@dataclass(repr=False)
class BacktestReport:
    """What the report shows of one backtest. ``values``: account value by time; ``drawdown``: a
    fraction, 0 at each new high; ``benchmark``: buy and hold of ``held`` from the same initial value
    (None when the result carries no prices); ``table``: the measures, Strategy and Benchmark."""

    values: pd.Series
    drawdown: pd.Series
    benchmark: Optional[pd.Series]
    held: list
    trades: pd.DataFrame
    table: pd.DataFrame
    title: str = "Account value"
    quote: Optional[str] = None
    _png: Optional[bytes] = field(default=None, repr=False)

    @classmethod
    def of(cls, result: "BacktestResult") -> "BacktestReport":
        values = series.value_series(result.account_values)
        prices = series.price_series(result.prices)
        held = series.benchmark_symbols(prices, list(result.symbols or []))
        initial = result.initial_account_value if result.initial_account_value is not None else (
            float(values.iloc[0]) if len(values) else None)
        hold = series.benchmark(prices, held, initial)
        trades = result.trades if isinstance(result.trades, pd.DataFrame) else series.trades_frame(result.trades)
        return cls(values=values, drawdown=series.drawdown(values), benchmark=hold,
                   held=held if hold is not None else [],
                   trades=trades, table=measures.side_by_side(values, hold, result.metrics),
                   title=f"Backtest {result.backtest_id}", quote=result.quote_asset)

    @property
    def benchmark_label(self) -> str:
        return "buy and hold " + ", ".join(self.held) if self.held else "buy and hold"

    def figure(self) -> Any:
        """The equity curve against the benchmark with buy/sell markers, the drawdown beneath."""
        return report_figure(self.values, benchmark=self.benchmark, drawdown=self.drawdown,
                             fills=series.fills(self.trades), title=self.title, quote=self.quote,
                             benchmark_label=self.benchmark_label)

    def png(self, dpi: Optional[float] = None) -> Optional[bytes]:
        """The figure as PNG bytes (drawn once at the default resolution), or None with fewer than
        two values or without matplotlib."""
        if len(self.values) < 2 or (self._png is not None and dpi is None):
            return self._png
        try:
            data = png(self.figure(), dpi)
        except ImportError:
            return None
        if dpi is None:
            self._png = data
        return data
