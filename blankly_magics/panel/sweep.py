"""Sweep: parameter ranges, an objective and constraints, the Sweep button, its progress and its table.

The ranges are read as ``--sweep`` reads them (one ``NAME=VALUES`` a line: ``low=20,25,30``
or ``high=65:80:5``), the constraints as ``--constraint`` (one a line), and the sweep runs
through the workflow's ``run`` with the Backtest section's period and balances, as
``%%blankly_deploy --backtest --sweep ...`` runs it.
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ..sweepspec import DEFAULT_METRIC, GOALS, METRICS
from .section import Section
from .widgets import grid, labelled, show


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class SweepSection(Section):
    name = "sweep"
    title = "Sweep parameters"
    rank = 25

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.ranges_input = labelled(W.Textarea(placeholder="low=20,25,30\nhigh=65:80:5", rows=3), "Ranges")
        self.goal_input = labelled(W.Dropdown(options=list(GOALS), value="maximize"), "Objective")
        self.metric_input = labelled(W.Dropdown(options=list(METRICS), value=DEFAULT_METRIC), "Metric")
        self.constraints_input = labelled(W.Textarea(placeholder="Max Drawdown (%) < 25", rows=2), "Constraints")
        for name in ("ranges", "goal", "metric", "constraints"):
            getattr(self, f"{name}_input").add_class(f"blankly-panel-sweep-{name}")
        self.fields = grid(self.ranges_input, self.constraints_input, self.goal_input, self.metric_input)
        self.sweep_button = W.Button(description="Sweep", button_style="info", icon="th",
                                     tooltip="One backtest per point of the ranges, in parallel on the server")
        self.sweep_button.add_class("blankly-panel-sweep")
        self.sweep_button.on_click(lambda _: panel.submit(self.sweep, cancellable=True))
        self.bar = W.IntProgress(value=0, min=0, max=1, description="Points",
                                 style={"description_width": "56px"}, layout=W.Layout(width="240px"))
        self.detail = W.HTML(value="")
        self.progress = W.HBox([self.bar, self.detail], layout=W.Layout(align_items="center"))
        self.progress.add_class("blankly-panel-sweep-progress")
        show(self.progress, False)

    def form(self) -> list[W.Widget]:
        return [self.fields]

    def actions(self) -> list[W.Widget]:
        return [self.sweep_button]

    def view(self) -> W.Widget:
        return self.progress

    def on_mode(self, mode: str) -> None:
        if self.box is not None:
            show(self.box, mode == "backtest")
        show(self.sweep_button, mode == "backtest")

    def reset(self) -> None:
        show(self.progress, False)

    def plan(self) -> Any:
        """The Sweep the fields describe; a mistake is a one-line error for the status line."""
        from ..workflow.sweeps import Sweep
        from .frame import PanelError

        ranges = _lines(self.ranges_input.value)
        if not ranges:
            raise PanelError("Sweep: give the ranges to sweep, one a line, e.g. low=20,25,30 or high=65:80:5")
        goal = {self.goal_input.value: self.metric_input.value}
        return Sweep.from_options(ranges, maximize=goal.get("maximize"), minimize=goal.get("minimize"),
                                  constraints=_lines(self.constraints_input.value))

    def points(self, finished: int, total: int, detail: str) -> None:
        """The workflow's progress of the sweep's points, in the bar beside its detail."""
        show(self.progress, True)
        self.bar.max = max(total, 1)
        self.bar.value = min(finished, self.bar.max)
        text = f"{finished} of {total} finished" + (f" \u00b7 {detail}" if detail else "")
        self.detail.value = f"<span style='margin-left:8px'>{html.escape(text)}</span>"

    def sweep(self) -> None:
        panel = self.panel
        plan = self.plan()
        backtest = getattr(panel, "backtest", None)
        args = backtest.args() if backtest is not None else {}
        result = panel.run("backtest", args, points=self.points, sweep=plan)
        if result is not None:
            self.show(result)

    def show(self, result: Any) -> None:
        panel = self.panel
        panel.show_html(result.to_html(chart=panel.config.show_chart, hints=False))
        if result.done and result.status == "completed":
            panel.say(f"Sweep {result.sweep_id} completed. {result.best_text()}.", "ok")
        elif not result.done:  # stopped waiting, or the timeout passed: the server keeps it
            panel.say(panel.last_note or result.headline())
        else:
            panel.say(result.headline(), "error")
