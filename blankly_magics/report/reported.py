"""What a backtest result gains from its report: ``BacktestResult`` mixes this in.

Nothing heavy at import: pandas and matplotlib load when a report is first asked for.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .backtest import BacktestReport


def trades_table(trades: list) -> Any:
    """Blankly's orders as a DataFrame (one row per order) when pandas is importable, else the list."""
    try:
        from .series import trades_frame
    except ImportError:
        return list(trades)
    return trades_frame(trades)


class Reported:
    """The report of a completed backtest, computed once, and what it shows. Expects ``ok``,
    ``status``, ``backtest_id``, ``account_values`` and a ``_report`` slot on the result."""

    ok: bool
    status: str
    backtest_id: str
    account_values: Any
    _report: Any

    @property
    def has_report(self) -> bool:
        """Completed, with account values, and pandas to compute the report with."""
        return self.ok and hasattr(self.account_values, "columns") and len(self.account_values) > 0

    @property
    def report(self) -> "BacktestReport":
        """The report's series, table and chart."""
        if self._report is None:
            from .backtest import BacktestReport
            from .document import ReportError

            if not self.has_report:
                raise ReportError(f"backtest {self.backtest_id} is {self.status}: only a completed backtest "
                                  "with account values has a report (and it needs pandas and matplotlib)")
            self._report = BacktestReport.of(self)  # type: ignore[arg-type]
        return self._report

    @property
    def drawdown(self) -> Any:
        """A pandas Series by time: how far below its highest value so far the account stood, as a
        FRACTION (-0.2 is 20 % below), 0 at each new high."""
        return self.report.drawdown

    @property
    def worst_drawdown(self) -> Any:
        """The deepest drawdown: ``depth`` (a fraction), ``peak``, ``trough``, ``recovered`` (None if
        never within the period) and ``days`` (from the peak until recovered, or the end); None when
        the account never fell below a high."""
        from .series import worst_drawdown

        return worst_drawdown(self.report.values)

    @property
    def benchmark(self) -> Any:
        """Buy and hold of the traded symbol(s) (equal parts) from the same initial value, over the
        same period and prices as the backtest: a pandas Series of account value (None without prices)."""
        return self.report.benchmark

    @property
    def metrics_table(self) -> Any:
        """Return, CAGR, volatility, Sharpe, worst drawdown and its duration: a DataFrame with a
        Strategy and a Benchmark column."""
        return self.report.table

    def save(self, path: Union[str, Path]) -> Path:
        """Write the report as one self-contained HTML file (metrics, charts, trades, period, backtest
        arguments, parameters, version); returns its path."""
        from .document import save

        return save(self, self.report, path)  # type: ignore[arg-type]
