"""ReplayExchange: a price CSV replayed bar by bar in real time, with a paper account that fills at the
replayed prices. Blankly's own Strategy runs on it live in tests/magics/test_activity_magics.py and in
the deployment notebook; here its clock, history and fills are checked directly."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fixtures_notebooks import PRICES_CSV

pytestmark = pytest.mark.blankly


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model folder as Blankly wants it (settings.json), the working directory of the test."""
    from tests.server.runs import blankly_settings

    (tmp_path / "settings.json").write_text(json.dumps(blankly_settings()[0]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def closes() -> list[float]:
    import pandas as pd

    return pd.read_csv(PRICES_CSV)["close"].tolist()


def test_the_replay_moves_one_bar_per_interval_and_history_is_what_was_replayed(model_dir: Path) -> None:
    from blankly_magics.replay import ReplayExchange

    exchange = ReplayExchange(PRICES_CSV, "GOOG-USD", interval=0.25, warmup=30)
    interface = exchange.get_interface()
    prices = closes()
    assert list(interface.history("GOOG-USD", 10)["close"]) == prices[21:31]  # the warmup, before any price
    assert interface.get_price("GOOG-USD") == prices[30]  # the first price starts the replay
    time.sleep(0.6)
    assert interface.get_price("GOOG-USD") == prices[32]
    assert list(interface.history("GOOG-USD", 3, resolution="1m", return_as="deque")["close"]) == prices[30:33]
    span = interface.history("GOOG-USD", to="10d")  # the bars within 10 days of the one replayed now
    assert list(span["close"]) == prices[27:33] and span["time"].iloc[-1] - span["time"].iloc[0] < 10 * 86400
    with pytest.raises(ValueError, match="this replay trades GOOG-USD only, not BTC-USD"):
        interface.get_price("BTC-USD")
    assert interface.cash == 10000.0 and exchange.get_type() == "replay"


def test_orders_fill_at_the_replayed_prices(model_dir: Path) -> None:
    from blankly_magics.replay import ReplayExchange

    exchange = ReplayExchange(PRICES_CSV, "GOOG-USD", interval=0.3, initial={"USD": 5000})
    interface = exchange.get_interface()
    first = interface.get_price("GOOG-USD")
    order = interface.market_order("GOOG-USD", "buy", 2)
    assert order.get_response()["status"] == "done"
    assert interface.get_account("GOOG")["available"] == 2
    assert interface.get_account("USD")["available"] == pytest.approx(5000 - 2 * first)
    above = interface.limit_order("GOOG-USD", "buy", round(first * 2, 2), 1)  # crossed at once: fills on the next check
    assert interface.get_account("USD")["hold"] == pytest.approx(round(first * 2, 2))
    deadline = time.monotonic() + 10
    while interface.get_order("GOOG-USD", above.get_id())["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert interface.get_order("GOOG-USD", above.get_id())["status"] == "done"
    assert interface.get_account("GOOG")["available"] == 3


def test_the_last_bar_stays_and_a_bad_csv_is_refused_in_one_line(model_dir: Path) -> None:
    from blankly_magics.replay import ReplayExchange

    short = model_dir / "short.csv"
    short.write_text("time,open,high,low,close,volume\n0,1,1,1,1.5,0\n60,1,1,1,2.5,0\n120,1,1,1,3.5,0\n")
    feed = ReplayExchange(short, "ABC-USD", interval=0.05).feed
    assert feed.get_price("ABC-USD") == 1.5 and not feed.finished
    time.sleep(0.3)
    assert feed.get_price("ABC-USD") == 3.5 and feed.finished and feed.bar_seconds == 60
    broken = model_dir / "broken.csv"
    broken.write_text("time,price\n0,1\n60,2\n")
    with pytest.raises(ValueError, match=r"has no open, high, low, close column: it needs time,open,high,low,close"):
        ReplayExchange(broken, "ABC-USD")
    with pytest.raises(ValueError, match="interval must be a number of seconds above 0"):
        ReplayExchange(short, "ABC-USD", interval=0)


def test_a_backtest_of_a_strategy_on_the_replay_reads_the_whole_csv(model_dir: Path) -> None:
    import blankly
    from blankly_magics.replay import ReplayExchange
    from tests.server.runs import blankly_settings

    (model_dir / "backtest.json").write_text(json.dumps(blankly_settings()[1]))

    def price_event(price, symbol, state):
        n = state.variables.setdefault("n", 0)
        state.variables["n"] = n + 1
        state.interface.market_order(symbol, side="buy" if n % 2 == 0 else "sell", size=1)

    strategy = blankly.Strategy(ReplayExchange(PRICES_CSV, "GOOG-USD", interval=0.2))
    strategy.add_price_event(price_event, symbol="GOOG-USD", resolution="1d")
    times = closes_times()
    result = strategy.backtest(initial_values={"USD": 10000}, start_date=times[0], end_date=times[100],
                               GUI_output=False, cache_location=str(model_dir / "price_caches"))
    values = result.get_account_history()["Account Value (USD)"]
    assert len(values) >= 90 and values.iloc[-1] != 10000  # it traded over the CSV's bars


def closes_times() -> list[float]:
    import pandas as pd

    return pd.read_csv(PRICES_CSV)["time"].tolist()
