"""Logs: the log of the model this panel deployed, fetched on each click from where it stopped."""
from __future__ import annotations

from typing import Any, Optional

import ipywidgets as W

from ..workflow import LogCursor, model_log
from .section import Section
from .widgets import show


class LogsSection(Section):
    name = "logs"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.cursor: Optional[LogCursor] = None
        self.model_id: Optional[str] = None
        self.logs_button = W.Button(description="Logs", icon="file-text-o")
        self.output = W.Output(layout=W.Layout(width="100%", max_height="240px", overflow="hidden auto"))
        self.area = W.VBox([self.logs_button, self.output])
        self.logs_button.on_click(lambda _: panel.submit(self.fetch))
        show(self.area, False)

    def view(self) -> W.Widget:
        return self.area

    def buttons(self) -> list[W.Button]:
        return [self.logs_button]

    def watch(self, model_id: str) -> None:
        """Show the Logs button for this model; its log is read from the start."""
        self.model_id = model_id
        self.cursor = None
        self.output.outputs = ()
        show(self.area, True)

    def on_session(self, session: Optional[Any]) -> None:
        if session is None:
            self.model_id = None
            self.reset()

    def reset(self) -> None:
        self.output.outputs = ()
        self.cursor = None
        show(self.area, False)

    def fetch(self) -> None:
        from .frame import PanelError

        if not self.model_id:
            raise PanelError("Nothing deployed from this panel yet")
        if self.cursor is None:
            self.cursor = LogCursor(model_log(self.panel.session(), self.model_id))
        text = self.cursor.read()
        if text:
            self.output.append_stdout(text)
        self.panel.say(f"Logs of {self.model_id}: {len(text)} new characters.", "ok")
