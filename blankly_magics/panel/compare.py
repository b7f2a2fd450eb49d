"""Compare: pick completed backtests of the model in Target, see their metrics side by side and their
equity curves overlaid (``workflow.compare``, as ``%blankly compare`` shows them)."""
from __future__ import annotations

from typing import Any, Optional

import ipywidgets as W
from IPython.display import HTML

from ..formats import time_text
from ..hints import NOTEBOOK
from ..results import format_value
from ..workflow import compare
from ..workflow.fetch import Versions
from .section import Section
from .widgets import fit, show

NO_MODEL = "Pick a model in Target (one with completed backtests), then list its backtests."


def option_label(backtest: dict, version: dict) -> str:
    """One line per backtest: version, description, when it ran, its return and Sharpe ratio."""
    summary = backtest.get("summary") or {}
    metrics = summary.get("metrics") or {}
    number = version.get("number")
    parts = [f"v{number}" if number is not None else str(backtest.get("versionId") or "")[:8],
             " ".join(str(backtest.get("description") or version.get("description") or "").split())[:40],
             time_text(backtest.get("createdAt"), seconds=False, utc=True)]
    if metrics.get("Cumulative Returns (%)") is not None:
        parts.append(f"return {format_value(metrics['Cumulative Returns (%)'])} %")
    if metrics.get("Sharpe Ratio") is not None:
        parts.append(f"Sharpe {format_value(metrics['Sharpe Ratio'])}")
    return " \u00b7 ".join(p for p in parts if p)


class CompareSection(Section):
    name = "compare"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.model_id: Optional[str] = None
        self.last: Any = None  # the last Comparison shown
        self._watching = False
        self.picker = W.SelectMultiple(options=[], rows=6, layout=W.Layout(width="100%"))
        self.picker.add_class("blankly-panel-compare-picker")
        self.list_button = W.Button(description="List backtests", icon="refresh",
                                    tooltip="List the completed backtests of the model in Target")
        self.compare_button = W.Button(description="Compare", icon="columns", tooltip="Compare the picked backtests")
        self.compare_button.add_class("blankly-panel-compare")
        self.hint = W.HTML(f"<span style='color:#57606a'>{NO_MODEL}</span>")
        self.output = W.Output(layout=W.Layout(width="100%", overflow="auto hidden"))
        head = W.HTML("<div style='font-weight:600;border-bottom:1px solid var(--jp-border-color2,#ddd);"
                      "margin:10px 0 2px 0'>Compare backtests</div>")
        self.area = W.VBox([head, self.hint, self.picker, W.HBox([self.list_button, self.compare_button]),
                            self.output], layout=W.Layout(width="100%"))
        self.list_button.on_click(lambda _: panel.submit(self.refresh))
        self.compare_button.on_click(lambda _: panel.submit(self.compare))
        show(self.area, False)

    def view(self) -> W.Widget:
        return self.area

    def buttons(self) -> list[W.Button]:
        return [self.list_button, self.compare_button]

    def on_session(self, session: Optional[Any]) -> None:
        show(self.area, session is not None)
        if session is None:
            self.model_id = None
            self.picker.options = []
            self.output.outputs = ()

    def load(self, session: Any) -> None:
        self.refresh()
        model_dd = getattr(getattr(self.panel, "target", None), "model_dd", None)
        if model_dd is not None and not self._watching:
            self._watching = True
            model_dd.observe(self._model_changed, names="value")

    def _model_changed(self, _change: Any) -> None:
        """A model picked (by hand, or by Target after a run): list its backtests, when signed in."""
        from .. import session

        if session.current() is not None and self._model() != self.model_id:
            self.panel.submit(self.refresh)

    def on_mode(self, mode: str) -> None:
        from .. import session

        show(self.area, mode == "backtest" and session.current() is not None)

    def _model(self) -> Optional[str]:
        from .target import NEW_MODEL

        chosen = getattr(getattr(self.panel, "target", None), "model_dd", None)
        value = chosen.value if chosen is not None else None
        return None if value in (None, NEW_MODEL) else value

    def refresh(self) -> None:
        """List the completed backtests of the model picked in Target, newest first."""
        session = self.panel.session()
        self.model_id = self._model()
        if self.model_id is None:
            self.picker.options = []
            self.hint.value = f"<span style='color:#57606a'>{NO_MODEL}</span>"
            return
        versions = Versions(session)
        done = [b for b in session.client.backtests(self.model_id) if b.get("status") == "completed"]
        keep = set(self.picker.value)
        self.picker.options = [(option_label(b, versions.of(self.model_id, b.get("versionId"))), b["backtestId"])
                               for b in done]
        self.picker.value = tuple(b["backtestId"] for b in done if b["backtestId"] in keep)
        self.hint.value = (f"<span style='color:#57606a'>{len(done)} completed backtest(s) of this model: "
                           "pick two or more (Ctrl- or Shift-click), then Compare.</span>")

    def compare(self) -> None:
        from .frame import PanelError

        chosen = set(self.picker.value)
        picked = [value for _, value in reversed(self.picker.options) if value in chosen]  # oldest first
        if len(picked) < 2:
            raise PanelError("Pick two or more backtests to compare (Ctrl- or Shift-click in the list)")
        self.panel.say(f"Comparing {len(picked)} backtests\u2026", "work")
        comparison = compare(self.panel.session(), picked, NOTEBOOK)
        self.last = comparison
        self.output.outputs = ()
        self.output.append_display_data(HTML(fit(comparison.to_html(chart=self.panel.config.show_chart))))
        self.panel.say(f"Compared {len(picked)} backtests.", "ok")
