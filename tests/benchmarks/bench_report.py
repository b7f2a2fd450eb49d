"""A completed backtest's display below a cell: the whole report vs the bare equity chart.

Ours: ``BacktestResult.from_api(payload).to_html()`` (the trades table, drawdown, buy-and-hold
benchmark, side-by-side measures, and the chart: equity against the benchmark, buy/sell markers,
the drawdown beneath, as a PNG). Baseline: the same account values drawn as a single-line equity
chart (``charts.equity_figure`` + ``figure_png``) with the same matplotlib, which is the least a
result can show. Both run in this process, interleaved, after one warm-up each (imports, fonts),
on a result the size of the RSI model's on the shipped prices: 1000 daily account values, 692
prices, a dozen trades.
"""
from __future__ import annotations

import csv
import time
from typing import Any, Callable

from .harness import REPO, Row, interleaved, median, spread

NAME = "report"
PRICES = REPO / "notebooks" / "data" / "GOOG-USD-1d.csv"
START, STOP = 1275350400, 1362096000  # 2010-06-01 .. 2013-03-01 UTC
DAY = 86400


def payload() -> dict[str, Any]:
    """A completed backtest's answer: holding the stock 60 days out of every 120, from its prices."""
    with open(PRICES, newline="") as fh:
        bars = [(int(r["time"]), float(r["close"])) for r in csv.DictReader(fh) if START <= int(r["time"]) < STOP]
    closes = dict(bars)
    cash, held, price = 10000.0, 0.0, bars[0][1]
    values, trades = [], []
    for day, when in enumerate(range(START, STOP, DAY)):
        price = closes.get(when, price)
        if day % 60 == 0:
            side = "buy" if held == 0 else "sell"
            size = round(cash / price, 2) if side == "buy" else held
            cash, held = (cash - size * price, size) if side == "buy" else (cash + size * price, 0.0)
            trades.append({"symbol": "GOOG-USD", "id": f"order-{day}", "size": size, "status": "done",
                           "type": "spot-market", "side": side, "time": when, "price": price})
        values.append({"time": when, "value": cash + held * price})
    metric = {"value": 0.5, "display_name": "Sharpe Ratio", "type": "number"}
    return {"backtestId": "bench", "status": "completed", "result": {
        "metrics": {"sharpe": metric}, "accountValues": values, "trades": trades,
        "initialAccountValue": values[0]["value"], "finalAccountValue": values[-1]["value"],
        "startTime": START, "stopTime": STOP, "symbols": ["GOOG-USD"], "quoteAsset": "USD",
        "prices": {"column": "close", "thinned": False, "series": {
            "GOOG-USD": {"time": [t for t, _ in bars], "price": [p for _, p in bars]}}}}}


def ours(answer: dict) -> Callable[[], float]:
    from blankly_magics.results import BacktestResult

    def once() -> float:
        started = time.perf_counter()
        BacktestResult.from_api(answer).to_html()
        return time.perf_counter() - started

    return once


def bare_chart(answer: dict) -> Callable[[], float]:
    from blankly_magics.charts import account_values_frame, equity_figure, figure_png

    def once() -> float:
        started = time.perf_counter()
        figure_png(equity_figure(account_values_frame(answer["result"]["accountValues"]), quote="USD"))
        return time.perf_counter() - started

    return once


def run(quick: bool = False) -> list[Row]:
    answer = payload()
    runs = {"ours": ours(answer), "bare": bare_chart(answer)}
    cold = {name: fn() for name, fn in runs.items()}
    samples = interleaved(runs, 3 if quick else 15)
    mine, theirs = median(samples["ours"]), median(samples["bare"])
    details = [
        f"seconds: ours {spread(samples['ours'], 3)}; bare chart {spread(samples['bare'], 3)}",
        f"first call (imports included): ours {cold['ours']:.3f} s, bare chart {cold['bare']:.3f} s",
        f"{len(answer['result']['accountValues'])} account values, {len(answer['result']['trades'])} trades",
    ]
    return [Row("report: a completed backtest's display", mine * 1000, theirs * 1000, "ms", details)]
