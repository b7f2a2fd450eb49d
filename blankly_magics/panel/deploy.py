"""Deploy live: one confirmation click, then the deployment's card and its Stop button."""
from __future__ import annotations

import threading
from typing import Any, Optional

import ipywidgets as W

from ..workflow import stop_model
from .section import Section
from .widgets import show


class DeploySection(Section):
    name = "deploy"
    rank = 30

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.model_id: Optional[str] = None  # the model this panel deployed last
        self._armed: Optional[threading.Timer] = None
        self.deploy_button = W.Button(description="Deploy live", button_style="warning", icon="rocket",
                                      layout=W.Layout(width="190px"))  # room for "Confirm deploy live"
        self.deploy_button.add_class("blankly-panel-deploy")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger")
        self.bar = W.HBox([self.stop_button])
        self.deploy_button.on_click(self._on_deploy)
        self.stop_button.on_click(lambda _: panel.submit(self.stop))
        show(self.deploy_button, False)
        show(self.bar, False)

    def actions(self) -> list[W.Widget]:
        return [self.deploy_button]

    def view(self) -> W.Widget:
        return self.bar

    def buttons(self) -> list[W.Button]:
        return [self.deploy_button, self.stop_button]

    def on_mode(self, mode: str) -> None:
        show(self.deploy_button, mode == "live")
        self.disarm()

    def on_session(self, session: Optional[Any]) -> None:
        if session is None:  # what was deployed belongs to the session that is gone
            self.model_id = None
            self.reset()

    def reset(self) -> None:
        show(self.bar, False)

    def close(self) -> None:
        self.disarm()

    def _on_deploy(self, _button: Any) -> None:
        if self._armed is None:
            # Going live spends money and trades: one confirmation click, for a few seconds.
            self.deploy_button.description = "Confirm deploy live"
            self.deploy_button.button_style = "danger"
            seconds = self.panel.confirm_seconds
            self.panel.say(f"Click 'Confirm deploy live' within {seconds:g} s to go live.")
            timer = threading.Timer(seconds, self.disarm)
            timer.daemon = True
            self._armed = timer
            timer.start()
            return
        self.disarm()
        self.panel.submit(self.deploy, cancellable=True)

    def disarm(self) -> None:
        timer, self._armed = self._armed, None
        if timer is not None:
            timer.cancel()
        self.deploy_button.description = "Deploy live"
        self.deploy_button.button_style = "warning"

    def deploy(self) -> None:
        panel = self.panel
        result = panel.run("live")
        if result is None:
            return
        self.model_id = result.model_id
        panel.show_html(result.to_html(hints=False))  # Logs and Stop are buttons here, not commands
        show(self.bar, True)
        panel.logs.watch(result.model_id)
        panel.say(f"Deployed model {result.model_id} version {result.version_id}: {result.status}.", "ok")

    def stop(self) -> None:
        from .frame import PanelError

        if not self.model_id:
            raise PanelError("Nothing deployed from this panel yet")
        self.panel.say(stop_model(self.panel.session(), self.model_id) + ".", "ok")
