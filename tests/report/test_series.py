"""The report's arithmetic on series small enough to check by hand: drawdown and its duration,
an equal-weight buy-and-hold benchmark, the trades table and its fills, the measures, and the
comparison's columns."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from blankly_magics.report import Comparison, ReportError, measures, series
from blankly_magics.results import BacktestResult

DAY = 86400
T0 = 1275350400  # 2010-06-01 UTC


def values_of(*values: float) -> pd.Series:
    return series.value_series([{"time": T0 + i * DAY, "value": v} for i, v in enumerate(values)])


def day(n: int) -> pd.Timestamp:
    return pd.Timestamp(T0 + n * DAY, unit="s", tz="UTC")


def test_drawdown_is_a_fraction_below_the_running_high_and_the_worst_lasts_until_recovered() -> None:
    values = values_of(100, 120, 90, 110, 125, 100)
    assert series.drawdown(values).tolist() == pytest.approx([0, 0, -0.25, 110 / 120 - 1, 0, -0.2])
    worst = series.worst_drawdown(values)
    assert (worst.depth, worst.peak, worst.trough, worst.recovered) == (pytest.approx(-0.25), day(1), day(2), day(4))
    assert worst.days == 3.0
    never = series.worst_drawdown(values_of(100, 80, 90))  # not back at the high: lasts to the end
    assert (never.recovered, never.end, never.days) == (None, day(2), 2.0)
    assert series.worst_drawdown(values_of(1, 2, 3)) is None
    table = measures.performance(values_of(100, 120, 90, 110, 125, 100))
    assert table["Worst drawdown (%)"] == pytest.approx(-25.0) and table["Worst drawdown duration (days)"] == 3.0


def test_a_time_reported_twice_keeps_its_last_value() -> None:
    values = series.value_series([{"time": T0, "value": 1.0}, {"time": T0, "value": 2.0},
                                  {"time": T0 + DAY, "value": 3.0}])
    assert values.tolist() == [2.0, 3.0] and str(values.index.tz) == "UTC"


def test_the_benchmark_splits_the_initial_value_equally_and_holds() -> None:
    prices = series.price_series({"column": "close", "series": {
        "A-USD": {"time": [T0, T0 + DAY], "price": [10.0, 20.0]},
        "B-USD": {"time": [T0, T0 + DAY, T0 + 2 * DAY], "price": [100.0, 50.0, 100.0]},
        "C-USD": {"time": [T0], "price": [-1.0]},  # no usable price: not a symbol to hold
    }})
    assert sorted(prices) == ["A-USD", "B-USD"]
    held = series.benchmark_symbols(prices, ["B-USD", "A-USD", "Z-USD"])
    assert held == ["B-USD", "A-USD"]
    hold = series.benchmark(prices, held, 1000.0)
    assert hold.tolist() == [1000.0, 1250.0, 1500.0]  # A's last price holds between its bars
    assert series.benchmark_symbols(prices, []) == ["A-USD", "B-USD"]  # nothing traded: everything priced
    assert series.benchmark(prices, ["A-USD"], 1000.0).tolist() == [1000.0, 2000.0]
    assert series.benchmark({}, [], 1000.0) is None


def test_trades_come_out_one_row_per_order_and_fill_when_they_filled() -> None:
    trades = series.trades_frame([
        {"symbol": "A-USD", "id": "m1", "side": "buy", "size": 2, "price": 10.0, "type": "spot-market",
         "status": "done", "time": T0, "exchange_specific": {}},
        {"symbol": "A-USD", "id": "l1", "side": "sell", "size": 2, "price": 12.0, "type": "limit",
         "status": "done", "time": T0 + DAY, "executed_time": T0 + 3 * DAY},
        {"symbol": "A-USD", "id": "l2", "side": "sell", "size": 1, "price": 15.0, "type": "limit",
         "status": "canceled", "time": T0 + DAY, "canceled_time": T0 + 2 * DAY},
    ])
    assert list(trades.columns) == ["time", "symbol", "side", "size", "price", "order_id", "type", "status",
                                    "executed_time", "canceled_time"]
    assert trades["order_id"].tolist() == ["m1", "l1", "l2"] and trades["time"].iloc[0] == day(0)
    fills = series.fills(trades)
    assert list(zip(fills["time"], fills["side"])) == [(day(0), "buy"), (day(3), "sell")]
    assert series.trades_frame([]).empty and list(series.trades_frame([]).columns) == list(series.TRADE_COLUMNS)


def test_the_measures_follow_their_documented_formulas() -> None:
    rng = np.random.default_rng(7)
    growth = np.cumprod(1 + rng.normal(0.001, 0.01, 400))
    values = values_of(*(1000 * growth))
    got = measures.performance(values, risk_free=0.02)
    returns = values.pct_change().dropna()
    assert got["Return (%)"] == pytest.approx((values.iloc[-1] / values.iloc[0] - 1) * 100)
    assert got["CAGR (%)"] == pytest.approx(((values.iloc[-1] / values.iloc[0]) ** (365 / 399) - 1) * 100)
    assert got["Volatility (%)"] == pytest.approx(returns.std() * math.sqrt(252) * 100)
    assert got["Sharpe ratio"] == pytest.approx((returns.mean() * 252 - 0.02) / (returns.std() * math.sqrt(252)))
    weekly = measures.performance(values, step=7 * DAY)  # the backtest's own resampling step
    sampled = values.iloc[::7].pct_change().dropna()
    assert weekly["Volatility (%)"] == pytest.approx(sampled.std() * math.sqrt(36) * 100)
    assert measures.performance(values_of(5.0))["Return (%)"] is None  # one value says nothing
    assert measures.performance(values_of(5.0, 5.0, 5.0))["Sharpe ratio"] is None  # flat: no ratio


def _completed(backtest_id: str, created: float, values: list, description: str = "tuned") -> BacktestResult:
    return BacktestResult.from_api({
        "backtestId": backtest_id, "status": "completed", "versionId": "v" * 32, "modelId": "m",
        "description": description, "createdAt": created,
        "result": {"metrics": {"sharpe": {"value": 0.5, "display_name": "Sharpe Ratio", "type": "number"}},
                   "accountValues": [{"time": T0 + i * DAY, "value": v} for i, v in enumerate(values)],
                   "trades": [], "initialAccountValue": values[0], "finalAccountValue": values[-1],
                   "startTime": T0, "stopTime": T0 + len(values) * DAY, "symbols": ["A-USD"], "quoteAsset": "USD",
                   "prices": {"column": "close", "series": {"A-USD": {"time": [T0, T0 + DAY], "price": [1, 2]}}}},
    }, fetch_version=lambda: {"number": 3, "description": "tuned thresholds"})


def test_a_comparison_labels_each_column_once_and_refuses_what_did_not_complete() -> None:
    one = _completed("aaaaaaaa1", T0, [100, 110, 105])
    two = _completed("bbbbbbbb2", T0, [100, 90, 120])
    comparison = Comparison.of([one, two])
    assert list(comparison.table.columns) == ["v3 tuned thresholds (2010-06-01 00:00) [aaaaaaaa]",
                                              "v3 tuned thresholds (2010-06-01 00:00) [bbbbbbbb]"]
    assert comparison.table.index[:6].tolist() == list(measures.ROWS)
    assert comparison.table.loc["Return (%)"].tolist() == pytest.approx([5.0, 20.0])
    assert comparison.table.loc["Benchmark return (%)"].tolist() == pytest.approx([100.0, 100.0])
    assert comparison.table.loc["Sharpe Ratio"].tolist() == [0.5, 0.5]
    failed = BacktestResult.from_api({"backtestId": "c1", "status": "failed", "error": "the script exited with 1"})
    with pytest.raises(ReportError, match=r"^backtest c1 is failed \(the script exited with 1\): only completed"):
        Comparison.of([one, failed])
    with pytest.raises(ReportError, match="backtest c1 is failed: only a completed backtest"):
        failed.save("x.html")
