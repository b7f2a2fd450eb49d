"""A backtest's time series as pandas objects: account value, drawdown, buy-and-hold benchmark, trades.

Every index is a UTC ``DatetimeIndex``. The drawdown is a FRACTION (``-0.2``: 20 % below the
highest value so far), 0 at each new high. The benchmark is what the initial account value would
be worth holding the traded symbol(s) from the first bar of the period, in equal parts, read from
the prices the backtest itself replayed (the platform hook hands them back with the result).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import pandas as pd

from ..formats import epoch_seconds

DAY = 86400.0
# The columns of ``trades_frame``, in order; Blankly's other order fields follow them.
TRADE_COLUMNS = ("time", "symbol", "side", "size", "price", "order_id", "type", "status")


def _utc(stamps: Iterable[Any]) -> pd.DatetimeIndex:
    seconds = [epoch_seconds(s) for s in stamps]
    return pd.DatetimeIndex(pd.to_datetime([float("nan") if s is None else s for s in seconds], unit="s", utc=True))


def _numbers(values: Sequence[Any]) -> Any:
    """Values as a float array, anything unreadable as NaN."""
    return pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)


def value_series(account_values: Any) -> pd.Series:
    """Account values ([{"time", "value"}] or a (time, value) DataFrame) as a Series by time; a
    time reported twice keeps its last value, as Blankly's own result does."""
    if isinstance(account_values, pd.DataFrame):
        times, values = account_values["time"], list(account_values["value"])
        index = pd.DatetimeIndex(times) if pd.api.types.is_datetime64_any_dtype(times) else _utc(times)
    else:
        rows = [p for p in (account_values or []) if isinstance(p, Mapping)]
        index, values = _utc(p.get("time") for p in rows), [p.get("value") for p in rows]
    series = pd.Series(_numbers(values), index=index, name="strategy")
    series = series[series.index.notna() & series.notna()]
    return series[~series.index.duplicated(keep="last")].sort_index()


def drawdown(values: pd.Series) -> pd.Series:
    """How far below its highest value so far the series stands, as a fraction (0 at a new high)."""
    return (values / values.cummax() - 1.0).rename("drawdown")


@dataclass(frozen=True)
class Drawdown:
    """The deepest fall: from the high before it (``peak``) to its bottom (``trough``), lasting until
    the value was back at that high (``recovered``; None when it never was within the period)."""

    depth: float  # a fraction, negative
    peak: pd.Timestamp
    trough: pd.Timestamp
    recovered: Optional[pd.Timestamp]
    end: pd.Timestamp  # recovered, or the last time of the series

    @property
    def days(self) -> float:
        """From the peak to the recovery (or the end of the period), in days."""
        return (self.end - self.peak).total_seconds() / DAY


def worst_drawdown(values: pd.Series) -> Optional[Drawdown]:
    """The deepest drawdown of the series, or None when it never fell below a high."""
    if len(values) < 2:
        return None
    falls = drawdown(values)
    trough = falls.idxmin()
    if not falls[trough] < 0:
        return None
    before = values[:trough]
    peak = before.idxmax()
    after = values[trough:]
    back = after[after >= values[peak]]
    recovered = back.index[0] if len(back) else None
    return Drawdown(float(falls[trough]), peak, trough, recovered, recovered or values.index[-1])


def price_series(prices: Optional[Mapping[str, Any]]) -> dict[str, pd.Series]:
    """The result's ``prices`` ({"column", "series": {symbol: {"time": [...], "price": [...]}}}) as
    one Series per symbol, positive prices only."""
    out: dict[str, pd.Series] = {}
    for symbol, bars in ((prices or {}).get("series") or {}).items():
        if not isinstance(bars, Mapping):
            continue
        times, values = list(bars.get("time") or []), list(bars.get("price") or [])
        count = min(len(times), len(values))
        series = pd.Series(_numbers(values[:count]), index=_utc(times[:count]))
        series = series[series.index.notna() & (series > 0)].sort_index()
        if len(series):
            out[str(symbol)] = series[~series.index.duplicated(keep="last")]
    return out


def benchmark_symbols(prices: Mapping[str, pd.Series], traded: Sequence[str]) -> list[str]:
    """The symbols to hold: the traded ones the prices cover, else every symbol priced."""
    held = [s for s in traded if s in prices]
    return held or list(prices)


def benchmark(prices: Mapping[str, pd.Series], symbols: Sequence[str], initial: Optional[float]) -> Optional[pd.Series]:
    """Buy and hold: ``initial`` split equally over ``symbols`` at each one's first price, valued at
    every bar of any of them (a symbol between its bars keeps its last price)."""
    held = [prices[s] for s in symbols if s in prices and len(prices[s])]
    if not held or initial is None:
        return None
    growth = pd.concat([p / p.iloc[0] for p in held], axis=1).sort_index().ffill().fillna(1.0)
    return (float(initial) * growth.mean(axis=1)).rename("benchmark")


def trades_frame(trades: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Blankly's order list as one row per order: time (UTC), symbol, side, size, price, order_id,
    type, status, then any other field Blankly gave (a limit order's executed_time...)."""
    rows = [dict(t) for t in trades if isinstance(t, Mapping)]
    for row in rows:
        row["order_id"] = row.pop("id", None)
        row.pop("exchange_specific", None)
    frame = pd.DataFrame(rows)
    for column in TRADE_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    for column in ("time", "executed_time", "canceled_time"):
        if column in frame.columns:
            frame[column] = _utc(frame[column]) if len(frame) else pd.DatetimeIndex([], tz="UTC")
    for column in ("size", "price"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    extra = [c for c in frame.columns if c not in TRADE_COLUMNS]
    return frame[list(TRADE_COLUMNS) + extra]


def fills(trades: pd.DataFrame) -> pd.DataFrame:
    """The orders that filled, at the time they filled: market orders at their time, limit orders at
    their executed_time; canceled and open ones left out. Columns time, side, symbol, price."""
    if trades.empty:
        return trades.loc[:, ["time", "side", "symbol", "price"]]
    when = trades["time"]
    if "executed_time" in trades.columns:
        limit = trades["type"].astype(str).str.contains("limit")
        when = when.where(~limit, trades["executed_time"])
    frame = trades.assign(time=when).loc[:, ["time", "side", "symbol", "price"]]
    return frame[frame["time"].notna()]
