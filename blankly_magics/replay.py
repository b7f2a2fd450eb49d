"""``ReplayExchange``: a Blankly exchange whose live feed replays a price CSV, bar by bar, in real time.

Offline there is no exchange to trade on, yet a live strategy should run the real
live path: ``blankly.Strategy(exchange)``, ``strategy.start()``, price events on
Blankly's own schedulers, orders through its strategy logger (and so through the
platform's reporter hooks), a paper account. This exchange gives it that::

    exchange = ReplayExchange("data/GOOG-USD-1d.csv", "GOOG-USD", interval=0.5, initial={"USD": 10000})
    strategy = blankly.Strategy(exchange)
    strategy.add_price_event(price_event, symbol="GOOG-USD", resolution=0.5, init=init)
    strategy.start()

The CSV has Blankly's price layout (``time,open,high,low,close,volume``, time in
epoch seconds, one row per bar). Every ``interval`` seconds of wall clock the
replay moves one bar on, from the first price asked for; the price is that bar's
close, and market orders fill at it (paper orders: an account kept in memory,
started from ``initial``). Limit orders fill when a replayed price crosses them,
checked once a bar, and each fill is reported through ``blankly.reporter.update_order``
as an exchange's fill is. ``history()`` gives the bars replayed so far (and the
``warmup`` bars before the replay starts), whatever resolution is asked: the
replay has one, the CSV's. After the last bar the price stays at its close.
``strategy.backtest(...)`` on it backtests over the CSV's bars (it never starts the replay).

Blankly reads ``settings.json`` from the working directory for any exchange, this
one included. Blankly is imported with this module: a model that uses it needs
Blankly, as every model does.
"""
from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

import blankly
import pandas as pd
from blankly.exchanges.exchange import Exchange
from blankly.exchanges.interfaces.exchange_interface import ExchangeInterface
from blankly.exchanges.interfaces.paper_trade.paper_trade_interface import PaperTradeInterface
from blankly.utils.time_builder import time_interval_to_seconds
from blankly.utils.utils import AttributeDict

__all__ = ["ReplayExchange", "ReplayFeed", "ReplayInterface", "EXCHANGE_TYPE"]

EXCHANGE_TYPE = "replay"
COLUMNS = ("time", "open", "high", "low", "close", "volume")
_INCREMENT = 1e-9  # the smallest size and price step: the paper account allows any fraction


def read_bars(csv_path: Union[str, Path]) -> pd.DataFrame:
    """The CSV's bars, oldest first; ValueError naming what is wrong with the file."""
    try:
        frame = pd.read_csv(csv_path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the price CSV {csv_path}: {exc}") from None
    missing = [c for c in COLUMNS if c not in frame.columns and c != "volume"]
    if missing:
        raise ValueError(f"the price CSV {csv_path} has no {', '.join(missing)} column: "
                         f"it needs {','.join(COLUMNS)} (time in epoch seconds)")
    if "volume" not in frame.columns:
        frame["volume"] = 0.0
    frame = frame[list(COLUMNS)].dropna().sort_values("time").reset_index(drop=True)
    if len(frame) < 2:
        raise ValueError(f"the price CSV {csv_path} needs at least two bars, it has {len(frame)}")
    return frame


class ReplayFeed(ExchangeInterface):
    """The exchange's own calls: the replayed bars and the clock that walks through them."""

    def __init__(self, bars: pd.DataFrame, symbol: str, interval: float, initial: dict[str, float],
                 warmup: int = 0, fee: float = 0.0) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be a number of seconds above 0, not {interval!r}")
        if not 0 <= warmup < len(bars):
            raise ValueError(f"warmup must be between 0 and {len(bars) - 1} bars, not {warmup!r}")
        self.bars = bars
        self.symbol = symbol
        self.base, self.quote = symbol.split("-", 1) if "-" in symbol else (symbol, "USD")
        self.interval = float(interval)
        self.warmup = warmup
        self.initial = dict(initial)
        self.fee = float(fee)
        self.bar_seconds = float(bars["time"].diff().median())
        self._started: Optional[float] = None
        self._lock = threading.Lock()
        super().__init__(EXCHANGE_TYPE, self)

    # -- the clock -------------------------------------------------------------

    def start(self) -> None:
        """Start the replay now (the first price asked for starts it otherwise)."""
        with self._lock:
            if self._started is None:
                self._started = time.monotonic()

    def position(self) -> int:
        """The index of the bar being replayed now."""
        if self._started is None:
            return self.warmup
        moved = int((time.monotonic() - self._started) / self.interval)
        return min(self.warmup + moved, len(self.bars) - 1)

    @property
    def finished(self) -> bool:
        """The last bar has been replayed."""
        return self._started is not None and self.position() == len(self.bars) - 1

    def replayed(self) -> pd.DataFrame:
        """Every bar up to the one being replayed now (the warmup bars included)."""
        return self.bars.iloc[: self.position() + 1]

    def check_symbol(self, symbol: str) -> None:
        if symbol != self.symbol:
            raise ValueError(f"this replay trades {self.symbol} only, not {symbol}")

    # -- what Blankly asks an exchange's calls ------------------------------------------

    def init_exchange(self) -> None:
        pass

    def get_exchange_type(self) -> str:
        return EXCHANGE_TYPE

    def get_price(self, symbol: str) -> float:
        self.check_symbol(symbol)
        self.start()
        return float(self.bars["close"].iloc[self.position()])

    def get_product_history(self, symbol: str, epoch_start: float, epoch_stop: float,
                            resolution: Any) -> pd.DataFrame:
        """The bars whose (CSV) time lies in [epoch_start, epoch_stop]: once the replay runs, those
        replayed so far; before it starts, the whole CSV (a backtest reads it as its price data)."""
        self.check_symbol(symbol)
        bars = self.replayed() if self._started is not None else self.bars
        return bars[(bars["time"] >= epoch_start) & (bars["time"] <= epoch_stop)].reset_index(drop=True)

    def get_account(self, symbol: Optional[str] = None) -> AttributeDict:
        assets = {self.base: 0.0, self.quote: 0.0, **self.initial}
        return AttributeDict({asset: AttributeDict({"available": float(amount), "hold": 0.0})
                              for asset, amount in assets.items()})

    def get_products(self) -> list[dict[str, Any]]:
        return [{"symbol": self.symbol, "base_asset": self.base, "quote_asset": self.quote,
                 "base_min_size": _INCREMENT, "base_max_size": 1e15, "base_increment": _INCREMENT}]

    def get_fees(self, symbol: Optional[str] = None) -> dict[str, float]:
        return {"maker_fee_rate": self.fee, "taker_fee_rate": self.fee}

    def get_order_filter(self, symbol: str) -> dict[str, Any]:
        self.check_symbol(symbol)
        sizes = {"base_min_size": _INCREMENT, "base_max_size": 1e15, "base_increment": _INCREMENT}
        return {
            "symbol": symbol, "base_asset": self.base, "quote_asset": self.quote, "max_orders": 10 ** 15,
            "limit_order": {**sizes, "price_increment": _INCREMENT, "min_price": _INCREMENT, "max_price": 1e15},
            "market_order": {**sizes, "fractionable": True, "quote_increment": _INCREMENT,
                             "buy": {"min_funds": _INCREMENT, "max_funds": 1e15},
                             "sell": {"min_funds": _INCREMENT, "max_funds": 1e15}},
            "exchange_specific": {},
        }

    def _orders_elsewhere(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a replay's orders are paper orders: place them through the exchange's interface")

    market_order = limit_order = take_profit_order = stop_loss_order = _orders_elsewhere
    cancel_order = get_open_orders = get_order = _orders_elsewhere


class ReplayInterface(PaperTradeInterface):
    """The paper account over the replay: market orders fill at the replayed close, limit orders
    when a replayed price crosses them; ``history()`` is the bars replayed so far."""

    calls: ReplayFeed

    def __init__(self, feed: ReplayFeed) -> None:
        super().__init__(feed, dict(feed.initial))
        # Blankly looks up the cash asset by exchange name in settings.json, which has no "replay":
        # this interface's own copy of the settings names the replay's quote asset.
        self.user_preferences = copy.deepcopy(self.user_preferences)
        self.user_preferences["settings"].setdefault(EXCHANGE_TYPE, {"cash": feed.quote})
        self._limit_watch: Optional[threading.Thread] = None
        self._reported = 0

    def history(self, symbol: str, to: Union[str, int] = 200, resolution: Any = "1d",
                start_date: Any = None, end_date: Any = None, return_as: str = "df") -> Any:
        self.calls.check_symbol(symbol)
        bars = self.calls.replayed()
        if start_date is not None or end_date is not None:
            low = _epoch(start_date) if start_date is not None else float("-inf")
            high = _epoch(end_date) if end_date is not None else float("inf")
            bars = bars[(bars["time"] >= low) & (bars["time"] <= high)]
        elif isinstance(to, str):
            bars = bars[bars["time"] > bars["time"].iloc[-1] - time_interval_to_seconds(to)]
        else:
            bars = bars.tail(int(to))
        bars = bars.reset_index(drop=True)
        count = int(to) if isinstance(to, int) and start_date is None and end_date is None else len(bars)
        return self.cast_type(bars, return_as, count)

    def limit_order(self, symbol: str, side: str, price: float, size: float, stop_loss: bool = False) -> Any:
        order = super().limit_order(symbol, side, price, size, stop_loss=stop_loss)
        if self._limit_watch is None:
            self._limit_watch = threading.Thread(target=self._watch_limits, name="replay-limits", daemon=True)
            self._limit_watch.start()
        return order

    def _watch_limits(self) -> None:
        """Once a bar: fill the limit orders the replayed price crossed, and report each fill."""
        while True:
            time.sleep(self.calls.interval)
            try:
                self.evaluate_limits()
                self._report_fills()
            except Exception as exc:  # a bad order must not end the watch of the others
                print(f"replay: could not check the limit orders: {exc}", flush=True)

    def _report_fills(self) -> None:
        fills = self.executed_orders[self._reported:]
        self._reported += len(fills)
        for fill in fills:
            order = next((o for o in self.paper_trade_orders if o.get("id") == fill["id"]), {})
            blankly.reporter.update_order({"id": fill["id"], "status": "done", "price": order.get("price"),
                                           "symbol": order.get("symbol"), "time": fill.get("executed_time")},
                                          EXCHANGE_TYPE)


class ReplayExchange(Exchange):
    """A Blankly exchange replaying ``csv_path``'s bars for ``symbol``, one every ``interval`` seconds,
    with a paper account started from ``initial`` (default: 10000 of the symbol's quote asset).

    ``warmup`` bars are history before the replay starts (an RSI needs some); ``fee`` is the
    maker and taker fee rate; ``settings_path`` is Blankly's settings.json (default ./settings.json).
    """

    def __init__(self, csv_path: Union[str, Path], symbol: str, interval: float = 1.0,
                 initial: Optional[dict[str, float]] = None, *, warmup: int = 0, fee: float = 0.0,
                 portfolio_name: str = "replay", settings_path: Optional[str] = None) -> None:
        Exchange.__init__(self, EXCHANGE_TYPE, portfolio_name, settings_path)
        bars = read_bars(csv_path)
        quote = symbol.split("-", 1)[1] if "-" in symbol else "USD"
        self.calls = ReplayFeed(bars, symbol, interval, initial if initial is not None else {quote: 10000.0},
                                warmup=warmup, fee=fee)
        self.interface = ReplayInterface(self.calls)
        blankly.reporter.export_used_exchange(EXCHANGE_TYPE)

    @property
    def feed(self) -> ReplayFeed:
        return self.calls

    def get_asset_state(self, symbol: str) -> Any:
        return self.interface.get_account(symbol)

    def get_exchange_state(self) -> Any:
        return self.interface.get_products()

    def get_direct_calls(self) -> ReplayFeed:
        return self.calls


def _epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return pd.Timestamp(value).timestamp()
