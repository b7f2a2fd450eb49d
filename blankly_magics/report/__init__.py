"""The backtest report: benchmark, drawdown, trades, a side-by-side table, charts, a file to share,
and the comparison of several backtests.

Plain Python over pandas and matplotlib (imported with this package, which ``results`` loads only
when a report is first asked for). One module per idea:

- ``series``: account value, drawdown (a fraction), buy-and-hold benchmark, trades as pandas objects;
- ``measures``: return, CAGR, volatility, Sharpe, worst drawdown and its duration, for any value series;
- ``figure``: the charts (matplotlib's Agg canvas);
- ``backtest``: ``BacktestReport``, one backtest's report, behind ``BacktestResult.report``;
- ``document``: the report as HTML below a cell, as a self-contained file, and as text;
- ``comparison``: ``Comparison``, several backtests side by side (``workflow.compare`` fetches them).
"""
from __future__ import annotations

from .backtest import BacktestReport
from .comparison import Comparison
from .document import ReportError

__all__ = ["BacktestReport", "Comparison", "ReportError"]
