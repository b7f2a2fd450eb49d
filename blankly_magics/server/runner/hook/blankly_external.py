"""The platform hook Blankly looks for when a model runs deployed.

At import, ``blankly`` tries ``from blankly_external import Reporter``; when it
succeeds it sets ``blankly.is_deployed = True`` and sends every report (orders,
strategies, backtest results, screener results, notifications) to that object.
The runner puts the directory holding this file FIRST on a child's PYTHONPATH and
nowhere else, so only models it runs see it.

Everything is written under ``BLANKLY_MAGICS_REPORT_DIR``:
  events.jsonl           one JSON object per report, in order ({"event": kind, "time": epoch, ...})
  backtest_result.json   the last backtest result (written atomically), with the
                         prices the backtest read (see ``backtest_prices``)
  screener_result.json   the last screener result (written atomically)

A live strategy (no ``BACKTESTING``) is watched too: each order it places through
Blankly's strategy logger is followed by an ``order_update`` event with what the
returned order says (status, type, price; a paper fill's executed price), and its
account value (its quote asset plus what it holds of the symbols it trades, at
their prices) is an ``account_value`` event after each order and every
``BLANKLY_MAGICS_ACCOUNT_SECONDS`` (default 60) seconds, from a thread of its own.
The server serves these as the model's activity.

In a backtest (``BACKTESTING=1``) the uploaded kwargs (``BACKTESTING_ARGS``,
base64 JSON) are applied: ``strategy.start()`` runs ``strategy.backtest(**args)``,
a script's own ``strategy.backtest(...)`` gets the args merged over its own, and
a script that only defines a strategy is backtested when it ends. The chart
window is always off: runs are headless.

This file runs inside the model's interpreter (any Python >= 3.7), so it uses
the standard library only and imports nothing from blankly_magics.
"""
from __future__ import annotations

import atexit
import base64
import json
import math
import os
import sys
import threading
import time
import traceback

_lock = threading.Lock()


def _report_dir():
    path = os.environ.get("BLANKLY_MAGICS_REPORT_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
    return path


def plain(value, _depth=0):
    """A JSON-safe copy: numpy/pandas scalars to Python, NaN/inf to None, keys to str."""
    kind = type(value)
    if kind is float:  # the common cases first: a result holds thousands of plain numbers
        return value if math.isfinite(value) else None
    if kind is int or kind is str or value is None or kind is bool:
        return value
    if _depth > 50:
        return str(value)
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dict, list, tuple, set, frozenset)):  # item by item: a result holds thousands
        is_dict = isinstance(value, dict)
        out = {} if is_dict else []
        for key, item in (value.items() if is_dict else enumerate(value)):
            item_kind = type(item)  # the plain cases here, not in a call each
            if item_kind is float:
                item = item if math.isfinite(item) else None
            elif not (item_kind is int or item_kind is str or item is None):
                item = plain(item, _depth + 1)
            if is_dict:
                out[str(key)] = item
            else:
                out.append(item)
        return out
    # pandas objects: a DataFrame becomes a list of rows, a Series a list.
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and hasattr(value, "columns"):
        try:
            return plain(to_dict(orient="records"), _depth + 1)
        except Exception:
            pass
    tolist = getattr(value, "tolist", None)  # numpy arrays/scalars, pandas Series
    if callable(tolist):
        try:
            return plain(tolist(), _depth + 1)
        except Exception:
            pass
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return plain(item(), _depth + 1)
        except Exception:
            pass
    timestamp = getattr(value, "timestamp", None)  # datetime, pandas Timestamp
    if callable(timestamp):
        try:
            return plain(timestamp(), _depth + 1)
        except Exception:
            pass
    if callable(value):
        return getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or repr(value)
    return str(value)


def _write_json(name, data):
    directory = _report_dir()
    if not directory:
        return
    path = os.path.join(directory, name)
    tmp = path + ".tmp"
    # In one piece: json.dump to a file encodes in Python, 3x slower.
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _event(kind, **data):
    directory = _report_dir()
    if not directory:
        return
    record = {"event": kind, "time": time.time()}
    record.update(plain(data))
    line = json.dumps(record, allow_nan=False)
    with _lock:
        with open(os.path.join(directory, "events.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def backtest_args():
    """The uploaded ``.backtest()`` kwargs, or {} outside a backtest."""
    raw = os.environ.get("BACKTESTING_ARGS")
    if not raw:
        return {}
    try:
        args = json.loads(base64.b64decode(raw).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RuntimeError("BACKTESTING_ARGS is not base64-encoded JSON: %s" % exc) from None
    if not isinstance(args, dict):
        raise RuntimeError("BACKTESTING_ARGS must encode a JSON object of backtest kwargs")
    return args


def backtesting():
    return os.environ.get("BACKTESTING") == "1"


def shape_backtest_result(platform_result, controller=None):
    """Blankly's platform result -> the runner's result fields (JSON-safe); ``controller`` is the
    backtest controller that made it, whose prices the result keeps (see ``backtest_prices``)."""
    result = plain(platform_result)
    metrics = {}
    for key, metric in (result.get("metrics") or {}).items():
        if isinstance(metric, dict) and "value" in metric:
            metrics[metric.get("display_name") or key] = metric["value"]
        else:
            metrics[key] = metric
    return {
        "metrics": metrics,
        "account_values": result.get("account_values") or [],
        "trades": result.get("trades") or [],
        "initial_account_value": result.get("initial_account_value"),
        "final_account_value": result.get("final_account_value"),
        "start_time": result.get("start_time"),
        "stop_time": result.get("stop_time"),
        "symbols": result.get("symbols") or [],
        "quote_asset": result.get("quote_asset"),
        "exchange": result.get("exchange"),
        "blankly_backtest_id": result.get("backtest_id"),
        "prices": backtest_prices(controller, result) if controller is not None else None,
    }


# Bounds on the prices a result carries, whatever the backtest read: a year of minute bars
# would otherwise make the result tens of megabytes.
MAX_PRICE_POINTS = 20000  # over every symbol together
MAX_PRICE_SYMBOLS = 50


def _thinned(count, budget):
    """Indices of ``budget`` evenly spread points of ``count``, the first and the last among them."""
    if count <= budget:
        return range(count)
    step = (count - 1) / float(budget - 1)
    return sorted({int(round(i * step)) for i in range(budget)})


def backtest_prices(controller, platform_result):
    """The price each symbol's bars were read at (Blankly's ``use_price`` column, ``close`` unless
    the backtest said otherwise) within the backtest's period, from the records Blankly's backtest
    controller replayed (``controller.prices``: symbol -> records with ``time`` and the price
    columns). Traded symbols first; at most MAX_PRICE_SYMBOLS symbols and MAX_PRICE_POINTS points,
    thinned evenly (first and last bar kept) beyond that. None when the controller has no prices."""
    records_of = getattr(controller, "prices", None)
    if not isinstance(records_of, dict) or not records_of:
        return None
    column = getattr(controller, "use_price", None) or "close"
    start, stop = platform_result.get("start_time"), platform_result.get("stop_time")
    traded = [s for s in (platform_result.get("symbols") or []) if s in records_of]
    symbols = (traded + [s for s in records_of if s not in traded])[:MAX_PRICE_SYMBOLS]
    budget = max(2, MAX_PRICE_POINTS // len(symbols))
    series, thinned = {}, False
    for symbol in symbols:
        try:
            times = plain(records_of[symbol]["time"])
            prices = plain(records_of[symbol][column])
        except (KeyError, ValueError, IndexError, TypeError):
            continue
        bars = [(t, p) for t, p in zip(times, prices)
                if isinstance(t, (int, float)) and isinstance(p, (int, float))
                and (start is None or t >= start) and (stop is None or t <= stop)]
        bars.sort(key=lambda bar: bar[0])
        keep = _thinned(len(bars), budget)
        thinned = thinned or len(keep) < len(bars)
        series[str(symbol)] = {"time": [bars[i][0] for i in keep], "price": [bars[i][1] for i in keep]}
    if not series:
        return None
    return {"column": str(column), "series": series, "thinned": thinned}


def metrics_text(result):
    """A sweep point's printed result: Blankly's metrics block without its three history tables
    (they are in the point's result; printing them costs more than a short backtest)."""
    metrics = getattr(result, "metrics", None)
    if not isinstance(metrics, dict):
        return str(result)
    lines = ["", "Historical Dataframes: in this point's result (a sweep point does not print them)",
             "Blankly Metrics: "]
    for metric in metrics.values():
        name, value = metric.get("display_name", ""), metric.get("value")
        lines.append(name + ": " + " " * (33 - len(name)) + str(value) + ("%" if name.endswith("(%)") else ""))
    callbacks = getattr(result, "user_callbacks", None) or {}
    if callbacks:
        lines += ["", "User Callbacks: "] + ["%s: %s" % (key, value) for key, value in callbacks.items()]
    return "\n".join(lines) + "\n"


def _kwargs_of(original, args, kwargs):
    """Turn a backtest call's positional args into keywords, by Blankly's signature."""
    if not args:
        return dict(kwargs)
    import inspect

    bound = inspect.signature(original).bind_partial(*args, **kwargs).arguments
    flat = {}
    for name, value in bound.items():
        if name == "kwargs" and isinstance(value, dict):
            flat.update(value)
        else:
            flat[name] = value
    return flat


def _number(value):
    """A float from a number or numeric text (exchanges answer either), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def order_outcome(interface, order):
    """What a placed order's answer says: id, status, type and, when known, its price."""
    try:
        response = dict(order.get_response())
    except Exception:
        return None
    outcome = {key: response.get(key) for key in ("id", "status", "type", "symbol", "side")}
    price = _number(response.get("price"))
    for fill in getattr(interface, "market_order_execution_details", None) or ():
        if fill.get("id") == outcome["id"]:  # a paper fill keeps its executed price here
            price = _number(fill.get("executed_price"))
    outcome["price"] = price
    return outcome


class AccountWatch:
    """Samples a live strategy's account value on a thread of its own (never the strategy's)."""

    def __init__(self, interface, symbols, every):
        self.interface = interface
        self.symbols = symbols  # the reporter's list: filled as the strategy adds its events
        self.every = every
        self._wake = threading.Event()
        thread = threading.Thread(target=self._run, name="blankly-magics-account", daemon=True)
        thread.start()

    def soon(self):
        self._wake.set()

    def value(self):
        """(value, quote asset), or None before the strategy named a symbol."""
        if not self.symbols:
            return None
        quote = self.symbols[0].split("-")[-1]
        account = self.interface.get_account()
        total = 0.0
        for asset in dict.fromkeys([quote] + [s.split("-")[0] for s in self.symbols if s.endswith("-" + quote)]):
            entry = account.get(asset) if hasattr(account, "get") else None
            if not entry:
                continue
            amount = (_number(entry.get("available")) or 0.0) + (_number(entry.get("hold")) or 0.0)
            if amount and asset != quote:
                amount *= float(self.interface.get_price(asset + "-" + quote))
            total += amount
        return total, quote

    def _run(self):
        self._wake.wait(min(self.every, 2.0))  # a first value soon after the start, then at the pace asked
        while True:
            self._wake.clear()
            try:
                sampled = self.value()
            except Exception:  # an exchange hiccup: try again next time
                sampled = None
            if sampled is not None:
                _event("account_value", value=sampled[0], quote=sampled[1])
            self._wake.wait(self.every)


class _Reporter:
    """Receives Blankly's reports for a model run by the local server."""

    def __init__(self):
        self._live_vars = {}
        self._strategies = []
        self._symbols = []
        self._backtests_run = 0
        self._backtesting = None  # the strategy whose backtest runs now
        self._screener = None
        self._crashed = False
        self._account = None

    # -- strategies and backtests ------------------------------------------

    def export_strategy(self, strategy, *args, **kwargs):
        self._strategies.append(strategy)
        _event("strategy", type=type(strategy).__name__)
        if backtesting():
            self._arm_backtest(strategy)
        else:
            self._watch_live(strategy)

    def _watch_live(self, strategy):
        """Follow each order the strategy places, and its account's value (the first strategy's)."""
        logger = getattr(strategy, "interface", None)
        if logger is None:
            return
        if self._account is None:
            every = _number(os.environ.get("BLANKLY_MAGICS_ACCOUNT_SECONDS")) or 60.0
            self._account = AccountWatch(logger, self._symbols, max(0.5, every))
        for name in ("market_order", "limit_order"):
            original = getattr(logger, name, None)
            if callable(original):
                setattr(logger, name, self._follow(logger, original))

    def _follow(self, logger, original):
        def place(*args, **kwargs):
            order = original(*args, **kwargs)
            outcome = order_outcome(getattr(logger, "interface", None), order)
            if outcome:
                _event("order_update", order=outcome)
            self._account.soon()
            return order

        return place

    def _arm_backtest(self, strategy):
        reporter = self
        original = strategy.backtest
        uploaded = backtest_args()

        def backtest(*args, **kwargs):
            merged = _kwargs_of(original, args, kwargs)
            merged.update(uploaded)
            merged["GUI_output"] = False  # headless: never open a browser or write a chart
            reporter._backtests_run += 1
            _event("backtest_start", args=merged)
            reporter._backtesting = strategy
            try:
                return original(**merged)
            finally:
                reporter._backtesting = None

        def start(*args, **kwargs):
            # Printed as a local `print(strategy.backtest(...))` would, so the log shows the metrics.
            result = backtest()
            print(metrics_text(result) if os.environ.get("BLANKLY_MAGICS_SWEEP_POINT") == "1" else result)
            return result

        # Instance attributes shadow the class's methods for this strategy only.
        strategy.backtest = backtest
        strategy.start = start

    def _backtest_at_exit(self):
        """A script that only defines a strategy still gets backtested, as on the platform."""
        if not backtesting() or self._crashed or self._backtests_run or not self._strategies:
            return
        try:
            self._strategies[-1].backtest()
        except BaseException:
            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)

    def _controller(self):
        """The backtest controller of the strategy being backtested (Blankly keeps it at
        ``strategy.model.backtester``), or None."""
        strategy = self._backtesting or (self._strategies[-1] if self._strategies else None)
        return getattr(getattr(strategy, "model", None), "backtester", None)

    def export_backtest_result(self, platform_result, *args, **kwargs):
        try:
            shaped = shape_backtest_result(platform_result, self._controller())
        except Exception:  # the prices are a bonus: never lose the result over them
            traceback.print_exc()
            shaped = shape_backtest_result(platform_result)
        _write_json("backtest_result.json", shaped)
        _event("backtest_result", final_account_value=shaped["final_account_value"])

    # -- exchanges and orders ------------------------------------------------

    def export_used_exchange(self, exchange_name, *args, **kwargs):
        _event("exchange", name=exchange_name)

    def export_used_symbol(self, symbol, *args, **kwargs):
        if isinstance(symbol, str) and symbol not in self._symbols:
            self._symbols.append(symbol)
        _event("symbol", symbol=symbol)

    def log_market_order(self, exchange_out, exchange_type=None, *args, **kwargs):
        _event("market_order", order=exchange_out, exchange=exchange_type)

    def log_limit_order(self, exchange_out, exchange_type=None, *args, **kwargs):
        _event("limit_order", order=exchange_out, exchange=exchange_type)

    def update_order(self, exchange_out, exchange_type=None, *args, **kwargs):
        _event("order_update", order=exchange_out, exchange=exchange_type)

    def annotate_order(self, order_id, annotation=None, *args, **kwargs):
        _event("order_annotation", order_id=order_id, annotation=annotation)

    # -- live variables ------------------------------------------------------

    def export_live_var(self, var, name=None, description=None, *args, **kwargs):
        self._live_vars[id(var)] = var
        _event("live_var", name=name, value=var, description=description)

    def update_live_var(self, var, *args, **kwargs):
        return self._live_vars.get(id(var), var)

    # -- screeners -------------------------------------------------------------

    def export_screener(self, screener, *args, **kwargs):
        if self._screener is not None:
            raise RuntimeError("Currently only a single screener can be created per model.")
        self._screener = screener
        _event("screener", symbols=getattr(screener, "symbols", None))

    def export_screener_result(self, screener, *args, **kwargs):
        result = {
            "raw_results": getattr(screener, "raw_results", None),
            "formatted_results": getattr(screener, "formatted_results", None),
            "symbols": getattr(screener, "symbols", None),
            "status": getattr(screener, "status", None),
        }
        _write_json("screener_result.json", plain(result))
        _event("screener_result", symbols=result["symbols"])

    # -- notifications: recorded and printed, never sent from a local run -----

    def email(self, email_str=None, *args, **kwargs):
        message = plain(email_str if email_str is not None else kwargs.get("email"))
        _event("email", message=message)
        print("[blankly_magics] email recorded (not sent by the local server): %s" % (message,))

    def text(self, text=None, *args, **kwargs):
        _event("text", message=plain(text))
        print("[blankly_magics] text recorded (not sent by the local server): %s" % (text,))

    def __getattr__(self, name):
        # A report this Blankly version makes that we do not know yet: record, never crash.
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args, **kwargs):
            _event("report", name=name, args=list(args), kwargs=kwargs)

        return record


Reporter = _Reporter()

_previous_excepthook = sys.excepthook


def _note_crash(exc_type, exc, tb):
    Reporter._crashed = True
    _previous_excepthook(exc_type, exc, tb)


sys.excepthook = _note_crash
atexit.register(Reporter._backtest_at_exit)


def next_run():
    """A warm worker's lane runs a sweep's points one after another in one process (worker.py):
    each starts with a reporter as fresh as a new process's, its end-of-script backtest armed."""
    Reporter.__init__()
    atexit.unregister(Reporter._backtest_at_exit)
    atexit.register(Reporter._backtest_at_exit)
