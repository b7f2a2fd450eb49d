"""Waiting for a backtest: long polls (the server answers the moment its status changes), or, with
a server that answers at once, quick polls while it is young and slower as it runs on; one stop policy."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional

from ..results import TERMINAL_STATES, BacktestResult
from ..transport import DeploymentError
from . import interrupts
from .feedback import Feedback
from .fetch import fetch_backtest, result_from
from .states import state_text

if TYPE_CHECKING:
    from ..session import Session

LONG_POLL = 2.0  # seconds a status request may wait on the server for a change (?wait=); a Cancel waits as long
QUICK_POLL = 0.1  # seconds between status checks while a backtest is young
QUICK_FOR = 5.0  # seconds: a short backtest (the common case) is seen within QUICK_POLL of its end
SLOW_POLL = 2.0  # the interval the checks of a long backtest grow to
CANCEL_SETTLE = 15.0  # seconds a cancel waits for the server to stop the run


def next_poll(waited: float, last: float, poll: float = 0.5) -> float:
    """Seconds to sleep before the next status check, ``waited`` seconds into the current state,
    the last sleep having been ``last``: QUICK_POLL for the first QUICK_FOR seconds, then ``poll``
    growing x1.25 up to max(SLOW_POLL, poll), so a long backtest costs one request every 2 s."""
    poll = max(0.05, float(poll))
    if waited < QUICK_FOR:
        return min(QUICK_POLL, poll)
    if last < poll:
        return poll
    return min(last * 1.25, max(SLOW_POLL, poll))


def wait_for_backtest(
    session: "Session",
    backtest_id: str,
    feedback: Feedback,
    *,
    poll: float = 0.5,
    timeout: Optional[float] = None,
) -> BacktestResult:
    """Poll until the backtest completes, fails or is cancelled, showing its state on
    ``feedback.status``; then fetch the whole result. Past ``timeout`` seconds, or when the
    user stops waiting, the not-yet-finished result (``.done`` False): it keeps running."""
    started = time.monotonic()
    last: dict = {"backtestId": backtest_id, "status": "unknown"}

    def show(word: str, text: str = "") -> None:
        feedback.status(f"Backtest {backtest_id}: {text or word} ({time.monotonic() - started:.0f} s)", word)

    try:
        status = _poll(session, backtest_id, feedback, poll, timeout, show, last)
    except interrupts.STOPS:
        feedback.cancel.request()  # the face can tell the run was stopped
        feedback.note(interrupts.while_waiting(backtest_id, feedback.hints))
        return result_from(session, last, feedback.hints)
    if status.get("status") not in TERMINAL_STATES:
        feedback.note(f"Still {status.get('status')} after {timeout:g} s; it keeps running: "
                      f"{feedback.hints.result(backtest_id)}")
        return result_from(session, status, feedback.hints)
    result = fetch_backtest(session, backtest_id, feedback.hints)
    show(result.status)
    return result


def _poll(session: "Session", backtest_id: str, feedback: Feedback, poll: float, timeout: Optional[float],
          show: Callable[[str, str], None], last: dict) -> dict:
    """The backtest's last status: a final one, or the one seen when ``timeout`` passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay, state, since = 0.0, None, 0.0
    long_polls = True  # until the server shows it answers at once
    while True:
        feedback.cancel.check()
        asked = time.monotonic()
        wait = 0.0
        if state is not None and long_polls:
            wait = LONG_POLL if deadline is None else min(LONG_POLL, deadline - asked)
        status = _status(session, backtest_id, wait, state)
        if status is None:  # the server refused the long poll
            long_polls, wait = False, 0.0
            status = _status(session, backtest_id, 0.0, None)
        last.clear()
        last.update(status)
        word = str(status.get("status"))
        show(word, state_text(status))  # "building the environment: pip: ..." while one is built
        now = time.monotonic()
        if word in TERMINAL_STATES or (deadline is not None and now >= deadline):
            return status
        if wait > 0 and word == state and now - asked < wait / 2:
            long_polls = False  # it did not wait: poll on a schedule instead
        if word != state:  # queued -> running: its first seconds are polled quickly again
            state, since = word, now
        if wait > 0 and long_polls:
            continue
        delay = next_poll(now - since, delay, poll)
        feedback.cancel.sleep(delay if deadline is None else min(delay, deadline - now))


def _status(session: "Session", backtest_id: str, wait: float, seen: Optional[str]) -> Optional[dict]:
    """One status request (a long poll when ``wait``); None when the server refused the long poll."""
    if wait <= 0:
        return session.client.backtest_status(backtest_id)
    try:
        return session.client.backtest_status(backtest_id, wait=wait, seen=seen)
    except DeploymentError as exc:
        if exc.status == 400:
            return None
        raise


def cancel_backtest(session: "Session", backtest_id: str, settle: float = CANCEL_SETTLE) -> str:
    """Ask the server to stop the backtest and wait a little for it to stop; the line to show."""
    client = session.client
    status = client.cancel_backtest(backtest_id)
    deadline = time.monotonic() + settle  # the server stops the run asynchronously
    while status.get("status") not in TERMINAL_STATES and time.monotonic() < deadline:
        time.sleep(0.3)
        status = client.backtest_status(backtest_id)
    state = status.get("status")
    return f"Backtest {backtest_id}: {state}" + ("" if state in TERMINAL_STATES else " (cancel requested)")
