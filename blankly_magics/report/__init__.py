"""The backtest report: benchmark, drawdown, trades, a side-by-side table, charts, a file to share,
and the comparison of several backtests.

Plain Python over pandas and matplotlib, which load when a report is first asked for (importing
this package is cheap: its names below are looked up on first use). One module per idea:

- ``series``: account value, drawdown (a fraction), buy-and-hold benchmark, trades as pandas objects;
- ``measures``: return, CAGR, volatility, Sharpe, worst drawdown and its duration, for any value series;
- ``figure``: the charts (matplotlib's Agg canvas);
- ``backtest``: ``BacktestReport``, one backtest's report;
- ``reported``: what ``BacktestResult`` gains from it (``.report``, ``.drawdown``, ``.benchmark``,
  ``.metrics_table``, ``.save(path)``);
- ``document``: the report as HTML below a cell, as a self-contained file, and as text;
- ``comparison``: ``Comparison``, several backtests side by side (``workflow.compare`` fetches them).
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BacktestReport", "Comparison", "ReportError"]
_HOMES = {"BacktestReport": "backtest", "Comparison": "comparison", "ReportError": "document"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
