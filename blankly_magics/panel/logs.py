"""Logs: the log of the model this panel deployed, newest lines in view, followed while the box is open.

"Logs" opens the box and keeps reading the log onwards from where it stopped (a thread
of its own, every couple of seconds) until "Hide logs" closes it, the model stops
writing, or the panel is reset. The box keeps the last ``KEEP_LINES`` lines and stays
scrolled to its end: a scroll container laid out bottom-up (``column-reverse``) starts
at its last line, and each refresh draws it anew there.
"""
from __future__ import annotations

import html
import threading
from typing import Any, Optional

import ipywidgets as W

from ..workflow import LogCursor, model_log
from .section import Section
from .widgets import show

KEEP_LINES = 400  # the box shows the newest lines; the whole log is one %blankly logs away
FOLLOW_POLL = 2.0  # seconds between reads while the box is open
BOX_STYLE = ("max-height:240px;overflow:auto;display:flex;flex-direction:column-reverse;"
             "border:1px solid var(--jp-border-color2,#ddd);padding:2px 6px")


class LogsSection(Section):
    name = "logs"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.cursor: Optional[LogCursor] = None
        self.model_id: Optional[str] = None
        self.lines: list[str] = []  # the newest lines read (what the box shows)
        self._partial = ""  # a last line still being written
        self._lock = threading.Lock()
        self._follow: Optional[threading.Event] = None
        self.logs_button = W.Button(description="Logs", icon="file-text-o", tooltip="Show and follow the log")
        self.logs_button.add_class("blankly-panel-logs")
        self.box = W.HTML()
        self.box.add_class("blankly-panel-log")
        self.area = W.VBox([self.logs_button, self.box])
        self.logs_button.on_click(lambda _: self.toggle())
        show(self.box, False)
        show(self.area, False)

    def view(self) -> W.Widget:
        return self.area

    def buttons(self) -> list[W.Button]:
        return [self.logs_button]

    @property
    def text(self) -> str:
        """What the box shows."""
        with self._lock:
            return "\n".join(self.lines + ([self._partial] if self._partial else []))

    @property
    def open(self) -> bool:
        return self._follow is not None

    def watch(self, model_id: str) -> None:
        """Offer the Logs button for this model; its log is read from the start."""
        self.reset()
        self.model_id = model_id
        show(self.area, True)

    def on_session(self, session: Optional[Any]) -> None:
        if session is None:
            self.model_id = None
            self.reset()

    def reset(self) -> None:
        self._stop()
        with self._lock:
            self.cursor, self.lines, self._partial = None, [], ""
        self.box.value = ""
        show(self.box, False)
        show(self.area, False)

    def close(self) -> None:
        self._stop()

    def toggle(self) -> None:
        """Logs: open the box and follow the log; Hide logs: close it."""
        from .frame import PanelError

        if self.open:
            self._stop()
            show(self.box, False)
            return
        if not self.model_id:
            raise PanelError("Nothing deployed from this panel yet")
        session = self.panel.session()
        if self.cursor is None:
            self.cursor = LogCursor(model_log(session, self.model_id))
        stop = threading.Event()
        self._follow = stop
        self.logs_button.description, self.logs_button.icon = "Hide logs", "eye-slash"
        show(self.box, True)
        # Read on a thread of its own: no request on the kernel's thread, no busy buttons meanwhile.
        threading.Thread(target=self._keep_reading, args=(stop,), name="blankly-panel-logs", daemon=True).start()

    def fetch(self) -> str:
        """Read what is new and show the newest lines; the new text."""
        from ..client import DeploymentError

        cursor = self.cursor
        if cursor is None:
            return ""
        try:
            text = cursor.read()
        except DeploymentError as exc:
            self.panel.say(f"Logs of {self.model_id}: {exc}", "error")
            return ""
        if self.cursor is not cursor:  # reset meanwhile (a new deploy, a sign-out)
            return ""
        if text:
            self._add(text)
            self.box.value = box_html(self.text)
        elif not self.lines:
            self.box.value = box_html("(no log lines yet)")
        return text

    def _add(self, text: str) -> None:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            self.lines = (self.lines + lines)[-KEEP_LINES:]

    def _keep_reading(self, stop: threading.Event) -> None:
        from ..client import DeploymentError

        while not stop.is_set():
            cursor = self.cursor
            text = self.fetch()
            try:
                done = not text and cursor is not None and not cursor.source.running(cursor.last_page)
            except DeploymentError:
                done = False  # asked again at the next read
            if done:
                break  # the model writes no more: the box keeps what it shows
            stop.wait(FOLLOW_POLL)

    def _stop(self) -> None:
        stop, self._follow = self._follow, None
        if stop is not None:
            stop.set()
        self.logs_button.description, self.logs_button.icon = "Logs", "file-text-o"


def box_html(text: str) -> str:
    """The log's lines in a box that starts (and stays) scrolled to its last line."""
    return (f"<div class='blankly-log-box' style='{BOX_STYLE}'><pre class='blankly-log-lines' "
            f"style='margin:0;flex:none;overflow:visible;white-space:pre-wrap;overflow-wrap:anywhere'>"
            f"{html.escape(text)}</pre></div>")
