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
SETTLE = 2.0  # seconds a model must keep running to count as started (one that crashes at once: it does not)


def wait_until_started(session: "Session", model_id: str, feedback: Feedback, *, poll: float = 0.5,
                       timeout: Optional[float] = None) -> dict:
    """Poll while the model is starting or building its environment, showing its state on
    ``feedback.status``; the last answer of ``/model/deployment``: running (for ``SETTLE``
    seconds), crashed, stopped, restarting after a crash, or still getting ready once
    ``timeout`` passed or the user stopped waiting (it goes on on the server either way)."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    last: dict = {"modelId": model_id, "state": "starting"}
    delay, running_since = 0.0, None
    try:
        while True:
            feedback.cancel.check()
            last = session.client.deployment(model_id)
            now = time.monotonic()
            feedback.status(f"Model {model_id}: {state_text(last, 'state')} ({now - started:.0f} s)",
                            str(last.get("state")))
            running_since = (running_since or now) if last.get("state") == "running" else None
            if _ready(last, None if running_since is None else now - running_since) \
                    or (deadline is not None and now >= deadline):
                return last
            delay = next_poll(now - started, delay, poll)
            if running_since is not None:
                delay = min(delay, SETTLE / 4)
            feedback.cancel.sleep(delay if deadline is None else min(delay, deadline - now))
    except interrupts.STOPS:
        feedback.cancel.request()  # the face can tell the wait was stopped
        feedback.note(interrupts.while_starting(model_id, feedback.hints))
        return last


def _ready(answer: dict, running_for: Optional[float]) -> bool:
    """Past getting ready: running for SETTLE seconds, crashed or stopped, or restarting after a crash."""
    word = answer.get("state")
    if word == "running":
        return running_for is not None and running_for >= SETTLE
    return word not in GETTING_READY or bool(answer.get("restarts"))


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
