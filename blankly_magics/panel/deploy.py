"""Deploy live: one confirmation click, then the deployment's card, kept up to date, and its Stop button.

The card follows the model's state on a thread of its own (``workflow.live.follow_deployment``)
while it is shown and its state can still change: starting, building its environment (with
the build's step), running, restarting after a crash, and at last crashed (with the error
line) or stopped. Stop is enabled only while there is something to stop.
"""
from __future__ import annotations

import html
import threading
from typing import Any, Optional

import ipywidgets as W

from ..formats import time_text
from ..workflow import stop_model
from ..workflow.live import follow_deployment
from ..workflow.states import LIVE_ACTIVE, state_text
from .section import Section
from .widgets import show

COLOURS = {"running": "#1a7f37", "crashed": "#cf222e", "stopped": "#57606a"}


class DeploySection(Section):
    name = "deploy"
    rank = 30

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.model_id: Optional[str] = None  # the model this panel deployed last
        self.state: dict = {}  # its last /model/deployment answer
        self.names: dict = {}  # how the card names it: model, project, version
        self._armed: Optional[threading.Timer] = None
        self._follow: Optional[threading.Event] = None  # set to stop following the shown model
        self.deploy_button = W.Button(description="Deploy live", button_style="warning", icon="rocket",
                                      layout=W.Layout(width="190px"))  # room for "Confirm deploy live"
        self.deploy_button.add_class("blankly-panel-deploy")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger")
        self.stop_button.add_class("blankly-panel-stop")
        self.card = W.HTML()
        self.card.add_class("blankly-panel-deployment")
        self.bar = W.VBox([self.card, self.stop_button])
        self.deploy_button.on_click(self._on_deploy)
        self.stop_button.on_click(lambda _: panel.submit(self.stop))
        show(self.deploy_button, False)
        show(self.bar, False)

    def actions(self) -> list[W.Widget]:
        return [self.deploy_button]

    def view(self) -> W.Widget:
        return self.bar

    def buttons(self) -> list[W.Button]:
        # Stop is handed back to the panel's busy switch only while stopping makes sense.
        return [self.deploy_button] + ([self.stop_button] if self.stoppable else [])

    @property
    def stoppable(self) -> bool:
        return self.model_id is not None and self.state.get("state") in LIVE_ACTIVE

    def on_mode(self, mode: str) -> None:
        show(self.deploy_button, mode == "live")
        self.disarm()

    def on_session(self, session: Optional[Any]) -> None:
        if session is None:  # what was deployed belongs to the session that is gone
            self.model_id = None
            self.reset()

    def reset(self) -> None:
        self._stop_following()
        self.state = {}
        show(self.bar, False)

    def close(self) -> None:
        self.disarm()
        self._stop_following()

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

    # ------------------------------------------------------------ deploying and stopping

    def deploy(self) -> None:
        panel = self.panel
        result = panel.run("live")  # waits while the model starts (and builds its environment)
        if result is None:
            return
        session = panel.session()
        self.model_id = result.model_id
        self.names = _names(session, result)
        panel.logs.watch(result.model_id)
        self.show_state(session.client.deployment(result.model_id))
        show(self.bar, True)
        panel.say(f"Deployed {self.names['model']} version {self.names['version']}: "
                  f"{state_text(self.state, 'state')}.", "error" if self.state.get("state") == "crashed" else "ok")
        self._start_following(session)

    def stop(self) -> None:
        from .frame import PanelError

        if not self.model_id:
            raise PanelError("Nothing deployed from this panel yet")
        session = self.panel.session()
        line = stop_model(session, self.model_id)
        self.show_state(session.client.deployment(self.model_id))
        self.panel.say(line.replace(f"Model {self.model_id}", f"Model {self.names.get('model', self.model_id)}")
                       + ".", "ok")

    # ------------------------------------------------------------ the card

    def show_state(self, answer: dict) -> None:
        """Draw the card from a /model/deployment answer; enable Stop only if something runs."""
        self.state = dict(answer)
        self.stop_button.disabled = not self.stoppable or self.panel.busy  # before the card says why
        self.card.value = card_html(self.names, self.state)

    def _start_following(self, session: Any) -> None:
        self._stop_following()
        stop = threading.Event()
        self._follow = stop
        model_id = self.model_id

        def changed(answer: dict) -> None:
            if not stop.is_set() and self.model_id == model_id:
                self.show_state(answer)

        thread = threading.Thread(target=follow_deployment, args=(session, model_id, changed, stop),
                                  name=f"blankly-panel-follow-{model_id}", daemon=True)
        thread.start()

    def _stop_following(self) -> None:
        stop, self._follow = self._follow, None
        if stop is not None:
            stop.set()


def _names(session: Any, result: Any) -> dict:
    """The model's, its project's and its version's names, as the card shows them."""
    from ..client import DeploymentError
    from ..workflow.lookup import project_names

    names = {"model": result.name or result.model_id, "project": "", "version": (result.version_id or "?")[:8]}
    try:
        details = session.client.model_details(result.model_id)
        names["project"] = project_names(session).get(details.get("projectId"), "")
    except DeploymentError:  # the card names what it can
        return names
    numbers = {v.get("versionId"): v.get("number") for v in details.get("versions") or []}
    if numbers.get(result.version_id) is not None:
        names["version"] = str(numbers[result.version_id])
    return names


def card_html(names: dict, state: dict) -> str:
    """The deployment's card: what runs where, its state, and why it crashed."""
    word = str(state.get("state") or "unknown")
    colour = COLOURS.get(word, "#9a6700")
    where = f" in <i>{html.escape(names['project'])}</i>" if names.get("project") else ""
    lines = [f"<b>{html.escape(names.get('model', ''))}</b>{where} &middot; version {html.escape(names.get('version', ''))}",
             f"<span class='blankly-state' style='color:{colour};font-weight:600'>"
             f"{html.escape(state_text(state, 'state'))}</span>"
             + (f" since {html.escape(time_text(state['since'], seconds=False))}" if state.get("since") else "")]
    if state.get("restarts"):
        lines[-1] += f" &middot; restarts: {int(state['restarts'])}"
    if state.get("error"):  # why it crashed (or restarts, or ended by itself)
        tone = "#57606a" if word == "stopped" else "#cf222e"
        lines.append(f"<span class='blankly-error' style='color:{tone}'>{html.escape(str(state['error']))}</span>")
    return ("<div class='blankly-deployment-card' data-state='" + html.escape(word) + "' style='padding:6px 8px;"
            "border:1px solid var(--jp-border-color2,#ddd);border-radius:4px;margin:6px 0'>"
            + "<br>".join(lines) + "</div>")
