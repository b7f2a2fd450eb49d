"""Pick: backtest or deploy live, to which project and model, on which plan and Python."""
from __future__ import annotations

import sys
import threading
from typing import Any, Optional

import ipywidgets as W

from ..workflow import Memory, RunRequest
from .section import Section
from .widgets import grid, labelled, plan_label, row, show

NEW_MODEL = "__new__"  # the model dropdown's value for "+ new model"
NEW_OPTION = ("+ new model", NEW_MODEL)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


class TargetSection(Section):
    name = "target"
    title = "Target"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self._quiet = threading.local()  # set while the panel itself changes the dropdowns
        self.loaded = False
        self.project_dd = labelled(W.Dropdown(options=[]), "Project")
        self.model_dd = labelled(W.Dropdown(options=[NEW_OPTION], value=NEW_MODEL), "Model")
        self.model_name = labelled(W.Text(placeholder="name of the new model"), "New model")
        self.plan_dd = labelled(W.Dropdown(options=[]), "Plan")
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        chosen = panel.config.python or here
        versions = sorted({here, "3.9", "3.10", "3.11", "3.12", chosen}, key=_version_key)
        self.python_dd = labelled(W.Dropdown(options=versions, value=chosen), "Python")
        self.refresh_button = W.Button(icon="refresh", tooltip="Reload projects, models and plans",
                                       layout=W.Layout(width="36px"))
        self.mode = W.ToggleButtons(options=[("Backtest", "backtest"), ("Deploy live", "live")],
                                    value="backtest", style={"button_width": "110px"})
        self.mode.add_class("blankly-panel-mode")
        self.description = labelled(W.Text(placeholder="what changed in this version"), "Description")
        self.refresh_button.on_click(lambda _: panel.submit(lambda: self.load(panel.session())))
        self.mode.observe(self._on_mode, names="value")
        self.project_dd.observe(self._on_project, names="value")
        self.model_dd.observe(lambda _: self._show_name(), names="value")
        self._show_name()

    def form(self) -> list[W.Widget]:
        return [row(self.mode, self.refresh_button),
                grid(self.project_dd, self.model_dd, self.plan_dd, self.model_name, self.python_dd, self.description)]

    def buttons(self) -> list[W.Button]:
        return [self.refresh_button]

    # ------------------------------------------------------------ what a run asks for

    def request(self, kind: str, backtest_args: Optional[dict] = None) -> RunRequest:
        """The run the pickers describe; a new model's name defaults to the notebook's."""
        new = self.model_dd.value in (None, NEW_MODEL)
        return RunRequest.configured(
            self.panel.config, kind, notebook=self.panel.notebook,
            name=(self.model_name.value.strip() or None) if new else None,
            model=None if new else self.model_dd.value, project=self.project_dd.value, plan=self.plan_dd.value,
            python_version=self.python_dd.value, description=self.description.value.strip(),
            backtest_args=backtest_args or None,
        )

    def adopt(self, model_id: Optional[str]) -> None:
        """After a run, pick the model it went to (or the one the notebook remembers)."""
        self.load_models(select=model_id or self._remembered())

    # ------------------------------------------------------------ loading the pickers

    def on_session(self, session: Optional[Any]) -> None:
        if session is None:
            self._set_options(self.project_dd, [])
            self._set_options(self.model_dd, [NEW_OPTION])
            self._set_options(self.plan_dd, [])
            self.loaded = False
            self._show_name()

    def load(self, session: Any) -> None:
        self.panel.say("Loading projects, models and plans\u2026", "work")
        options = []
        for project in session.client.projects():
            pid = project.get("id") or project.get("projectId")
            name = str(project.get("name") or pid)
            personal = " (personal)" if pid == session.user_id and "personal" not in name.lower() else ""
            options.append((name + personal, pid))
        keep = self.project_dd.value if self.project_dd.value is not None else session.user_id
        self._set_options(self.project_dd, options, keep=keep)
        self.load_models(select=None if self.loaded else self._remembered())  # first fill: as the magics pick
        self.load_plans()
        self.panel.say("Ready.", "ok")

    def _remembered(self) -> Optional[str]:
        session = self.panel.session()
        return (Memory.of(session, self.panel.notebook).model() or {}).get("modelId")

    def load_models(self, select: Optional[str] = None) -> None:
        session = self.panel.session()
        options = [NEW_OPTION]
        for model in session.client.models(self.project_dd.value):
            mid = model.get("id") or model.get("modelId")
            options.append((f"{model.get('name') or mid}", mid))
        self._set_options(self.model_dd, options, keep=select or self.model_dd.value)
        self.loaded = True
        self._show_name()

    def load_plans(self) -> None:
        session = self.panel.session()
        live = self.mode.value == "live"
        plans = session.client.plans("live" if live else "backtesting")
        self._set_options(self.plan_dd, [(plan_label(name, spec or {}), name) for name, spec in plans.items()],
                          keep=self.plan_dd.value or self.panel.config.plan(self.mode.value))

    def _set_options(self, dropdown: W.Dropdown, options: list, keep: Any = None) -> None:
        self._quiet.on = True
        try:
            dropdown.options = options
            values = [value for _, value in options]
            if keep in values:
                dropdown.value = keep
            elif values and dropdown.index is None:
                dropdown.index = 0  # a dropdown that started empty selects nothing by itself
        finally:
            self._quiet.on = False

    def _on_project(self, _change: Any) -> None:
        if not getattr(self._quiet, "on", False):
            self.panel.submit(self.load_models)

    def _on_mode(self, change: Any) -> None:
        self.panel.set_mode(self.mode.value)

    def on_mode(self, mode: str) -> None:
        if self.plan_dd.options:
            self.panel.submit(self.load_plans)

    def _show_name(self) -> None:
        show(self.model_name, self.model_dd.value == NEW_MODEL)
