"""A live model after its deploy: waiting while it gets ready, and following it until its state is final.

``wait_until_started`` is what a deploy from any face waits for (the model's
environment may be built first, which takes a while); ``follow_deployment`` keeps
a view of the model (the panel's card) up to date until nothing will change it.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

from . import interrupts
from .feedback import Feedback
from .states import GETTING_READY, LIVE_FINAL, state_text
from .waiting import next_poll

if TYPE_CHECKING:
    from ..session import Session

FOLLOW_POLL = 2.0  # seconds between looks at a model whose view is shown


def wait_until_started(session: "Session", model_id: str, feedback: Feedback, *, poll: float = 0.5,
                       timeout: Optional[float] = None) -> dict:
    """Poll while the model is starting or building its environment, showing its state on
    ``feedback.status``; the last answer of ``/model/deployment``: running, crashed, stopped,
    restarting after a crash, or still getting ready once ``timeout`` passed or the user
    stopped waiting (it goes on on the server either way)."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    last: dict = {"modelId": model_id, "state": "starting"}
    delay = 0.0
    try:
        while True:
            feedback.cancel.check()
            last = session.client.deployment(model_id)
            word = str(last.get("state"))
            feedback.status(f"Model {model_id}: {state_text(last, 'state')} ({time.monotonic() - started:.0f} s)",
                            word)
            now = time.monotonic()
            if word not in GETTING_READY or last.get("restarts") or (deadline is not None and now >= deadline):
                return last
            delay = next_poll(now - started, delay, poll)
            feedback.cancel.sleep(delay if deadline is None else min(delay, deadline - now))
    except interrupts.STOPS:
        feedback.cancel.request()  # the face can tell the wait was stopped
        feedback.note(interrupts.while_starting(model_id, feedback.hints))
        return last


def follow_deployment(session: "Session", model_id: str, on_change: Callable[[dict], None],
                      stop: threading.Event, *, poll: float = FOLLOW_POLL) -> dict:
    """Call ``on_change(answer)`` with the model's ``/model/deployment`` answer each time it changes,
    until its state is final (stopped, crashed) or ``stop`` is set; the last answer. A server
    that cannot be reached for a moment is asked again at the next poll."""
    from ..client import DeploymentError

    seen: Optional[tuple] = None
    answer: dict = {}
    while not stop.is_set():
        try:
            answer = session.client.deployment(model_id)
        except DeploymentError:
            stop.wait(poll)
            continue
        shown = tuple(answer.get(k) for k in ("state", "versionId", "restarts", "error", "progress", "since"))
        if shown != seen:
            seen = shown
            on_change(answer)
        if answer.get("state") in LIVE_FINAL:
            break
        stop.wait(poll)
    return answer
