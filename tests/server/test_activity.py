"""GET /model/activity: what a live model reported through the platform hook, read while it runs.

The models here report as Blankly does, through ``blankly_external.Reporter`` (the hook
the runner puts on every run's path), without Blankly itself, so the paging, the merging
of an order's later updates and the safety of the reads are checked in seconds. Blankly's
own live path on the replay exchange is tests/magics/test_activity_magics.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from blankly_magics.orders import Activity
from tests.fixtures_server import ServerHandle, serving, wait_for, write_model_zip

REPORTER = r'''
import time, blankly_external
R = blankly_external.Reporter
R.export_live_var(30, "rsi_low", "buy below this RSI")
R.text("started trading")
def market(n):
    side = "buy" if n % 2 else "sell"
    R.log_market_order({"symbol": "GOOG-USD", "exchange": "replay", "size": 1.5, "id": "m%d" % n, "side": side},
                       "replay")
    R.update_order({"id": "m%d" % n, "status": "done", "price": 100.0 + n}, "replay")
for n in range(1, 21):
    market(n)
R.log_limit_order({"symbol": "GOOG-USD", "exchange": "replay", "size": 2, "id": "lim", "side": "buy",
                   "price": 90.0}, "replay")
for n in range(700):  # 700 KB of live variables: the limit order's fill lands on a later page
    R.export_live_var("x" * 1000, "padding")
R.update_order({"id": "lim", "status": "done", "price": 90.0}, "replay")
market(21)
market(22)
print("reported", flush=True)
while True:
    time.sleep(0.5)
'''

# Replaces its events file by a link to a host file, then by a pipe: the server must read neither.
SWAPPER = r'''
import os, time, blankly_external
blankly_external.Reporter.text("before the swap")
events = os.environ["BLANKLY_MAGICS_REPORT_DIR"] + "/events.jsonl"
os.remove(events)
os.symlink({target!r}, events)
print("linked", flush=True)
while not os.path.exists("pipe-now"):
    time.sleep(0.2)
os.remove(events)
os.mkfifo(events)
print("piped", flush=True)
while True:
    time.sleep(0.5)
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with serving(tmp_path_factory.mktemp("activity"), args=["--max-workers", "1"]) as handle:
        yield handle


def deploy(server: ServerHandle, script: str, path: Path, model_id: str = "") -> str:
    write_model_zip(path, files={"bot.py": script})
    fields = {"plan": "nano", "name": "reporter"} | ({"modelId": model_id} if model_id else {"createNew": "true"})
    with open(path, "rb") as fh:
        answer = server.request("POST", "/model/deploy", data=fields, files={"model": ("m.zip", fh, "application/zip")})
    assert answer.status_code == 200, answer.text
    return answer.json()["modelId"]


def logged(server: ServerHandle, model_id: str, text: str) -> None:
    wait_for(lambda: text in server.request("GET", "/model/logs", params={"modelId": model_id}).json()["text"],
             f"{text!r} in the model's log")


def activity(server: ServerHandle, model_id: str, **params: object) -> dict:
    answer = server.request("GET", "/model/activity", params={"modelId": model_id, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_orders_come_in_order_with_their_fills_page_by_page(server: ServerHandle, tmp_path: Path) -> None:
    model_id = deploy(server, REPORTER, tmp_path / "reporter.zip")
    logged(server, model_id, "reported")

    first = activity(server, model_id)
    assert first["since"] == 0 and first["more"] and not first["reset"]
    orders = first["orders"]
    assert [o["id"] for o in orders[:20]] == [f"m{n}" for n in range(1, 21)]
    assert [(o["side"], o["symbol"], o["size"], o["price"], o["type"], o["status"]) for o in orders[:2]] == [
        ("buy", "GOOG-USD", 1.5, 101.0, "market", "done"), ("sell", "GOOG-USD", 1.5, 102.0, "market", "done")]
    assert orders[20] | {"time": None} == {"time": None, "symbol": "GOOG-USD", "side": "buy", "size": 2.0,
                                           "price": 90.0, "type": "limit", "id": "lim", "status": None,
                                           "exchange": "replay"}
    assert first["vars"][0] | {"time": None} == {"time": None, "name": "rsi_low", "value": 30,
                                                 "description": "buy below this RSI"}
    assert [(n["kind"], n["message"]) for n in first["notifications"]] == [("text", "started trading")]

    pages, cursor, seen = [first], first["next"], Activity(model_id)
    seen.add(first)
    while pages[-1]["more"]:
        pages.append(activity(server, model_id, since=cursor))
        assert pages[-1]["since"] == cursor
        cursor = pages[-1]["next"]
        seen.add(pages[-1])
    assert len(pages) >= 2
    fill = next(o for page in pages[1:] for o in page["orders"] if o["id"] == "lim")
    assert fill["update"] is True and fill["status"] == "done"  # its order was on the first page
    # Merged by id, as a reader does: 23 orders, the limit order filled, in the order they were placed.
    assert [o["id"] for o in seen.order_list] == [f"m{n}" for n in range(1, 21)] + ["lim", "m21", "m22"]
    assert seen.orders["lim"] | {"time": None} == orders[20] | {"time": None, "status": "done"}
    assert seen.account_values == [] and seen.variables["padding"]["value"] == "x" * 1000

    recent = activity(server, model_id, recent=2)
    assert [o["id"] for o in recent["orders"]] == ["m21", "m22"] and recent["next"] == cursor
    assert activity(server, model_id, since=cursor)["orders"] == []  # nothing new: a follower waits

    # A new run of the model starts its activity afresh: an old cursor starts over.
    deploy(server, REPORTER.replace("range(700)", "range(3)"), tmp_path / "again.zip", model_id)
    again = wait_for(lambda: (page := activity(server, model_id, since=cursor))["reset"] and len(page["orders"]) == 23
                     and page, "the new run's orders")
    assert again["since"] == 0 and not again["more"]
    assert server.request("POST", "/model/kill", data={"modelId": model_id}).ok
    kept = activity(server, model_id)  # still there once stopped, until the next deploy
    assert len(kept["orders"]) == 23

    other = server.request("GET", "/model/activity", user="mallory", params={"modelId": model_id})
    assert other.status_code == 404 and other.json() == {"error": f"model {model_id!r} not found"}
    bad = server.request("GET", "/model/activity", params={"modelId": model_id, "since": "-5"})
    assert bad.status_code == 400 and "since must be a whole number" in bad.json()["error"]


def test_a_link_or_a_pipe_the_run_leaves_in_place_of_its_events_shows_nothing(
        server: ServerHandle, tmp_path: Path) -> None:
    key = server.data_dir / "signing.key"
    model_id = deploy(server, SWAPPER.format(target=str(key)), tmp_path / "swapper.zip")
    logged(server, model_id, "linked")
    answer = server.request("GET", "/model/activity", params={"modelId": model_id})
    assert answer.json()["notifications"] == [] and answer.json()["size"] == 0
    assert key.read_bytes().hex() not in answer.text
    # Tell the run to swap in a pipe: its folder is on the server's disk.
    (server.data_dir / "runs" / "live" / model_id / "model" / "pipe-now").write_text("")
    logged(server, model_id, "piped")
    piped = server.request("GET", "/model/activity", params={"modelId": model_id}, timeout=10)
    assert piped.status_code == 200 and piped.json()["size"] == 0  # answered at once, never blocked on the pipe
    assert server.request("POST", "/model/kill", data={"modelId": model_id}).ok
