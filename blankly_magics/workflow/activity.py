"""What a live model is doing: its recent orders and account values, read once or followed.

The server pages a model's activity by cursor (``/model/activity``); an
:class:`~blankly_magics.orders.Activity` gathers the pages. ``read_activity`` gives
the recent end of it, ``read_new`` what came since, ``follow_activity`` prints each
new order until the model stops or the user stops following.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..orders import Activity, order_line, orders_text
from . import interrupts
from .feedback import Feedback
from .lookup import RunError, find_model_id

if TYPE_CHECKING:
    from ..session import Session

MAX_PAGES = 1000  # a bound on one read, not a loop forever against a confused server
RUNNING = ("running", "starting")
STATUS_ORDERS = 5  # the last orders `status` ends with


def read_activity(session: "Session", model_id: str, recent: int = 20) -> Activity:
    """The end of the model's activity: its last ``recent`` orders and the values reported with them."""
    activity = Activity(model_id, shown_orders=recent)
    activity.add(session.client.activity(model_id, recent=max(recent, 1)))
    return activity


def read_new(session: "Session", activity: Activity) -> list[dict]:
    """Every page since ``activity.cursor`` merged into it; the orders that came or changed."""
    changed: list[dict] = []
    for _ in range(MAX_PAGES):
        page = session.client.activity(activity.model_id, since=activity.cursor)
        changed += activity.add(page)
        if not page.get("more"):
            break
    return changed


def last_orders(session: "Session", model_id: str, count: int = STATUS_ORDERS) -> Optional[list[dict]]:
    """The model's last ``count`` orders, or None when this server keeps no activity."""
    from ..transport import DeploymentError

    try:
        return read_activity(session, model_id, count).order_list[-count:]
    except DeploymentError as exc:
        if exc.status in (404, 405):  # a server without /model/activity (the hosted API)
            return None
        raise


def live_model(session: "Session", model: Optional[str], project: Optional[str] = None) -> str:
    """``--model`` as an id; without it, the model deployed last."""
    if model:
        return find_model_id(session, model, project)
    deployed = [s for s in session.client.status() if isinstance(s, dict) and s.get("state") not in (None, "none")]
    if not deployed:
        raise RunError("no model of yours has been deployed: deploy one, or give --model ID_OR_NAME")
    return str(max(deployed, key=lambda s: s.get("since") or 0).get("modelId"))


def follow_activity(session: "Session", model_id: str, feedback: Feedback, *, recent: int = 20,
                    poll: float = 1.0) -> Activity:
    """The recent orders, then each new or changed order as a line, until the model stops running
    or the user stops following; the activity as read."""
    client = session.client
    activity = read_activity(session, model_id, recent)
    what = f"model {model_id}"
    try:
        feedback.note(orders_text(activity.order_list[-recent:], f"Orders of {what}"))
        while True:
            for order in read_new(session, activity):
                feedback.note(order_line(order))
            if client.deployment(model_id).get("state") not in RUNNING:
                for order in read_new(session, activity):  # what it reported just before it stopped
                    feedback.note(order_line(order))
                feedback.note(f"({what} is not running any more)")
                return activity
            feedback.cancel.sleep(poll)
    except interrupts.STOPS:
        feedback.cancel.request()
        feedback.note("\n" + interrupts.while_following(f"the activity of {what}"))
        return activity

