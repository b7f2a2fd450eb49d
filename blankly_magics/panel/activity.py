"""Activity: the recent orders and account value of the model this panel deployed, refreshed while shown.

It follows the deploy section's model (``panel.deploy.model_id``): once there is one,
the section shows and a timer of its own reads what is new every ``period``
seconds (off the kernel's thread and off the panel's worker, so the buttons stay
usable); signed out, closed or with nothing deployed, it reads nothing.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

import ipywidgets as W

from ..orders import Activity
from ..results import esc
from ..workflow.activity import read_activity, read_new
from .section import Section
from .widgets import fit, show

PERIOD = 5.0


class ActivitySection(Section):
    name = "activity"
    period = PERIOD  # seconds between two refreshes while shown

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.model_id: Optional[str] = None
        self.activity: Optional[Activity] = None
        self.refreshes = 0
        self.error = ""
        self.view_html = W.HTML()
        self.area = W.VBox([self.view_html], layout=W.Layout(width="100%"))
        self.area.add_class("blankly-panel-activity")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: Optional[threading.Thread] = None
        show(self.area, False)

    def view(self) -> W.Widget:
        return self.area

    @property
    def visible(self) -> bool:
        return self.model_id is not None and not self.panel.closed

    def on_session(self, session: Optional[Any]) -> None:
        if session is None:
            self.watch(None)
        else:
            self._start()

    def close(self) -> None:
        self._stop.set()

    def watch(self, model_id: Optional[str]) -> None:
        """Show this model's activity (None: show nothing), read afresh from its recent end."""
        with self._lock:
            self.model_id, self.activity, self.error = model_id, None, ""
        self.view_html.value = ""
        show(self.area, model_id is not None)

    def tick(self) -> None:
        """One beat of the timer: follow the deployed model, and read what it reported since."""
        deployed = getattr(getattr(self.panel, "deploy", None), "model_id", None)
        if deployed != self.model_id:
            self.watch(deployed)
        if self.visible:
            self.refresh()

    def refresh(self) -> None:
        from .. import session as sessions
        from .frame import error_line

        current = sessions.current()
        model_id = self.model_id
        if current is None or model_id is None:
            return
        try:
            with self._lock:
                if self.activity is None or self.activity.model_id != model_id:
                    self.activity = read_activity(current, model_id, recent=10)
                else:
                    read_new(current, self.activity)
                activity = self.activity
            self.error = ""
        except Exception as exc:  # noqa: BLE001 - shown in the section, the next beat tries again
            self.error = error_line(exc)
            activity = self.activity
        self.refreshes += 1
        self._render(activity)

    def _render(self, activity: Optional[Activity]) -> None:
        parts = [f"<div style='font-weight:600;margin-top:6px'>Activity of model {esc(self.model_id)}</div>"]
        if activity is not None:
            parts.append(activity.to_html())
        if self.error:
            parts.append(f"<p style='color:var(--jp-error-color1,#c62828)'>{esc(self.error)}</p>")
        self.view_html.value = fit("".join(parts))

    def _start(self) -> None:
        if self._timer is not None and self._timer.is_alive():
            return
        self._stop.clear()
        self._timer = threading.Thread(target=self._beat, name="blankly-panel-activity", daemon=True)
        self._timer.start()

    def _beat(self) -> None:
        from .. import session as sessions

        while not self._stop.wait(self.period):
            if self.panel.closed or sessions.current() is None:
                return
            self.tick()
