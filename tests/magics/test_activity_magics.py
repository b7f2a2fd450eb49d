"""A real Blankly strategy live on the replay exchange: its orders reach /model/activity,
``%blankly activity``, ``--follow`` and ``%blankly status``.

Real server (runs in bubblewrap sandboxes), real IPython shell, the model deployed from a
real notebook with ``%%blankly_deploy``; the strategy is Blankly's own live path
(``blankly.Strategy``, ``strategy.start()``, price events, orders through its strategy
logger and the platform hook) on ``blankly_magics.replay.ReplayExchange``.
"""
from __future__ import annotations

import re
import shutil
import threading
import time

import pandas as pd
import pytest

from tests.fixtures_notebooks import PRICES_CSV, write_notebook
from tests.fixtures_server import wait_for

STRATEGY = '''#| blankly
import blankly
from blankly_magics.replay import ReplayExchange


def price_event(price, symbol, state):
    n = state.variables.setdefault("n", 0)
    state.variables["n"] = n + 1
    state.interface.market_order(symbol, side="buy" if n % 2 == 0 else "sell", size=1)
'''
DEPLOY = '''%%blankly_deploy --notebook {nb} --name replayed
exchange = ReplayExchange("GOOG-USD-1d.csv", "GOOG-USD", interval=0.3, initial={{"USD": 10000}}, warmup=20)
strategy = blankly.Strategy(exchange)
strategy.add_price_event(price_event, symbol="GOOG-USD", resolution=0.3)
strategy.start()
'''
ROW = re.compile(r"^\S+ \S+\s+(buy|sell)\s+GOOG-USD\s+1\s+(\d+(?:\.\d+)?)\s+market\s+done\s+([0-9a-f-]{36})$", re.M)


@pytest.mark.slow
@pytest.mark.blankly
def test_a_live_strategy_on_the_replay_shows_its_orders_in_activity_follow_and_status(alice, cells, tmp_path):
    shutil.copy(PRICES_CSV, tmp_path / PRICES_CSV.name)
    nb = write_notebook(tmp_path / "replay.ipynb", [STRATEGY])
    out = cells.run(DEPLOY.format(nb=nb))
    assert "blankly_magics==" in out  # the model's requirements name it: the server runs it with its own
    model_id = cells.last.model_id

    def orders() -> list:
        return alice.request("GET", "/model/activity", params={"modelId": model_id}).json()["orders"]

    placed = wait_for(lambda: len(found := orders()) >= 6 and found, "six orders from the live strategy", 120)
    closes = pd.read_csv(PRICES_CSV)["close"].tolist()
    assert [o["side"] for o in placed[:6]] == ["buy", "sell"] * 3
    assert {(o["symbol"], o["type"], o["status"], o["size"], o["exchange"]) for o in placed} == {
        ("GOOG-USD", "market", "done", 1.0, "replay")}
    bars = [closes.index(o["price"], 20) for o in placed]  # filled at replayed closes, from the replay's start
    assert bars == sorted(bars) and bars[0] <= 22

    shown = cells.run(f"%blankly activity --model {model_id} --orders 4")
    rows = ROW.findall(shown)
    assert len(rows) == 4 and {side for side, _, _ in rows} == {"buy", "sell"}, shown
    activity = cells.last
    assert [o["id"] for o in activity.order_list] == [order_id for _, _, order_id in rows]
    assert activity.account_values and activity.account_values[-1]["quote"] == "USD"
    assert 9000 < activity.account_values[-1]["value"] < 11000
    assert "account value: " in shown
    assert "<img alt='account value'" in activity.to_html() or len(activity.account_values) < 2
    assert f"Orders of model {model_id}" in cells.run("%blankly activity --orders 1")  # default: deployed last

    # --follow: the last two, then each new order as a line, until the model is stopped.
    stopper = threading.Thread(target=lambda: (time.sleep(4), alice.request(
        "POST", "/model/kill", data={"modelId": model_id})), daemon=True)
    stopper.start()
    followed = cells.run(f"%blankly activity --model {model_id} --follow --orders 2")
    stopper.join()
    lines = followed.splitlines()
    start = lines.index(f"Orders of model {model_id} (2)")
    table, streamed = lines[start + 2:start + 4], lines[start + 4:]
    assert streamed[-1] == f"(model {model_id} is not running any more)", followed
    table_ids = {row[2] for row in ROW.findall("\n".join(table))}
    new_ids = {row[2] for row in ROW.findall("\n".join(streamed))} - table_ids
    assert len(table_ids) == 2 and len(new_ids) >= 3, followed  # orders placed while following, as they came

    status = cells.run(f"%blankly status --model {model_id}")
    assert re.search(r"status +stopped", status) and re.search(r"Last orders \(5\)\n", status), status
    assert len(ROW.findall(status)) == 5
