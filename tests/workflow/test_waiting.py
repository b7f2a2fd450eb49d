"""Waiting for a backtest: long polls where the server supports them, else the pace of its status checks."""
from __future__ import annotations

import time

import pytest

from blankly_magics.session import Session
from blankly_magics.workflow.feedback import Feedback
from blankly_magics.workflow.waiting import LONG_POLL, next_poll, wait_for_backtest
from tests.test_client import fast_client, js, scripted  # noqa: F401 - the fixture

RESULT = {"backtestId": "b1", "status": "completed", "result": {"metrics": {"Sharpe Ratio": 0.79}}}


def test_status_checks_are_quick_at_first_then_back_off_for_a_long_backtest() -> None:
    def schedule(poll: float, hours: float = 1.0) -> list[float]:
        waited, last, sleeps = 0.0, 0.0, []
        while waited < hours * 3600:
            last = next_poll(waited, last, poll)
            sleeps.append(last)
            waited += last
        return sleeps

    sleeps = schedule(0.5)
    quick = sleeps.index(0.5)
    assert 49 <= quick <= 51 and set(sleeps[:quick]) == {0.1}  # a run of a few seconds is seen at once
    assert sleeps[quick:quick + 2] == [0.5, 0.625] and sleeps[-1] == 2.0  # then the configured pace, growing
    assert len(sleeps) < 50 + 3600 / 2 + 20  # an hour's run: one check every 2 s, not 10 a second
    assert max(schedule(5.0)) == 5.0 and schedule(5.0)[60] == 5.0  # a slower pace asked for is kept
    assert set(schedule(0.05, hours=0.001)) == {0.05}  # and a quicker one too


def backtest(scripted, status):  # noqa: F811 - the fixture
    """A scripted server whose backtest b1 ends 0.6 s from now; ``status(request, ended)`` answers."""
    ends = time.monotonic() + 0.6
    server = scripted({
        ("GET", "/backtest/status"): lambda request: status(request, ends),
        ("GET", "/backtest/result"): lambda request: js(200, RESULT),
    })
    session = Session(fast_client(server.url), server.url, "u1", False, "test")
    return server, session, wait_for_backtest(session, "b1", Feedback())


def now_or_then(ends: float) -> dict:
    return {"backtestId": "b1", "status": "completed" if time.monotonic() >= ends else "running"}


def test_a_long_polling_server_tells_the_end_at_once_in_two_requests(scripted) -> None:  # noqa: F811
    def long_poll(request, ends):
        wait = float(request.query.get("wait", ["0"])[0])
        if wait and request.query["status"] == ["running"]:
            time.sleep(max(0.0, min(wait, ends - time.monotonic())))  # until it changes, as ours waits
        return js(200, now_or_then(ends))

    server, _, result = backtest(scripted, long_poll)
    statuses = [s.query for s in server.seen if s.path == "/backtest/status"]
    assert result.status == "completed" and result.metrics == {"Sharpe Ratio": 0.79}
    assert statuses == [{"backtestId": ["b1"]},  # what it is now, then: tell me when it is not running
                        {"backtestId": ["b1"], "wait": [f"{LONG_POLL:g}"], "status": ["running"]}]


@pytest.mark.parametrize("refuses", [False, True], ids=["ignores wait", "refuses wait"])
def test_a_server_without_long_polls_is_polled_on_a_schedule(scripted, refuses: bool) -> None:  # noqa: F811
    def at_once(request, ends):
        if refuses and "wait" in request.query:
            return js(400, {"error": "unknown field 'wait'"})
        return js(200, now_or_then(ends))

    server, _, result = backtest(scripted, at_once)
    statuses = [s.query for s in server.seen if s.path == "/backtest/status"]
    assert result.status == "completed"
    assert sum("wait" in q for q in statuses) == 1  # asked once, then never again
    assert 4 <= len(statuses) <= 12  # polled on its schedule: every 0.1 s for 0.6 s
