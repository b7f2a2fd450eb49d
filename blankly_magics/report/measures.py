"""The figures the report sets side by side for the strategy and its buy-and-hold benchmark.

Both columns are measured the same way from their value series, so they compare:

- Return (%): last value over first, minus 1.
- CAGR (%): that growth per 365-day year.
- Volatility (%): the standard deviation of the period returns, annualised.
- Sharpe ratio: (mean period return x periods a year - risk-free rate) / annualised volatility.
- Worst drawdown (%): the deepest fall below a previous high (negative), and its duration in
  days, from that high until the value was back at it (or the end of the period).

Returns are taken over the backtest's own resampling step (Blankly's "Resampled Time", one day by
default) with Blankly's convention of 252 trading days a year, so the strategy's Sharpe ratio here
matches the one Blankly prints, before Blankly's rounding.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import pandas as pd

from .series import DAY, worst_drawdown

RETURN = "Return (%)"
CAGR = "CAGR (%)"
VOLATILITY = "Volatility (%)"
SHARPE = "Sharpe ratio"
WORST = "Worst drawdown (%)"
WORST_DAYS = "Worst drawdown duration (days)"
ROWS = (RETURN, CAGR, VOLATILITY, SHARPE, WORST, WORST_DAYS)
YEAR_DAYS = 365.0
TRADING_DAYS = 252.0
MAX_STEPS = 1_000_000  # a one-second step over years would be hundreds of millions of values


def _number(value: Any) -> Optional[float]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def resampled(values: pd.Series, step: float) -> pd.Series:
    """The value at every ``step`` seconds from the first time: the last one known by then."""
    if len(values) < 2:
        return values
    grid = pd.date_range(values.index[0], values.index[-1], freq=pd.Timedelta(seconds=step))
    return values.reindex(values.index.union(grid)).ffill().reindex(grid)


def performance(values: Optional[pd.Series], *, step: float = DAY,
                risk_free: float = 0.0) -> dict[str, Optional[float]]:
    """The ROWS for one value series (None where it cannot say: too short, flat, empty)."""
    out: dict[str, Optional[float]] = dict.fromkeys(ROWS)
    if values is None or len(values) < 2 or not values.iloc[0]:
        return out
    first, last = float(values.iloc[0]), float(values.iloc[-1])
    out[RETURN] = (last / first - 1.0) * 100.0
    years = (values.index[-1] - values.index[0]).total_seconds() / (YEAR_DAYS * DAY)
    if years > 0 and last > 0 and first > 0:
        out[CAGR] = ((last / first) ** (1.0 / years) - 1.0) * 100.0
    step = max(step, (values.index[-1] - values.index[0]).total_seconds() / MAX_STEPS)  # a coarser one if need be
    returns = resampled(values, step).pct_change().dropna()
    per_year = TRADING_DAYS * DAY / step
    if len(returns) >= 2:
        spread = float(returns.std())
        out[VOLATILITY] = spread * math.sqrt(per_year) * 100.0
        if spread > 0:
            out[SHARPE] = (float(returns.mean()) * per_year - risk_free) / (spread * math.sqrt(per_year))
    worst = worst_drawdown(values)
    out[WORST] = worst.depth * 100.0 if worst else 0.0
    out[WORST_DAYS] = worst.days if worst else 0.0
    return out


def settings_of(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The resampling step and risk-free rate the backtest measured itself with."""
    step = _number(metrics.get("Resampled Time"))
    risk_free = _number(metrics.get("Risk Free Return Rate"))
    return {"step": step if step and step > 0 else DAY, "risk_free": risk_free or 0.0}


def side_by_side(strategy: Optional[pd.Series], benchmark: Optional[pd.Series],
                 metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The ROWS for the strategy and its benchmark: a DataFrame with columns Strategy, Benchmark."""
    settings = settings_of(metrics)
    table = pd.DataFrame({"Strategy": performance(strategy, **settings),
                          "Benchmark": performance(benchmark, **settings)}, index=list(ROWS), dtype=float)
    table.index.name = "metric"
    return table
