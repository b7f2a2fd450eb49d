"""Backtest: the period and balances, the Backtest button, and the result it brings."""
from __future__ import annotations

from typing import Any

import ipywidgets as W

from ..workflow import backtest_args
from .section import Section
from .widgets import grid, labelled, show


class BacktestSection(Section):
    name = "backtest"
    title = "Backtest period and balances"
    rank = 20

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.start_input = labelled(W.Text(placeholder="YYYY-MM-DD"), "Start")
        self.end_input = labelled(W.Text(placeholder="YYYY-MM-DD"), "End")
        self.to_input = labelled(W.Text(placeholder="or a span: 1y, 6M"), "Or 'to'")
        self.initial_input = labelled(W.Text(placeholder="USD=10000"), "Initial")
        for name in ("start", "end", "to", "initial"):
            getattr(self, f"{name}_input").add_class(f"blankly-panel-{name}")
        self.fields = grid(self.start_input, self.end_input, self.to_input, self.initial_input)
        self.backtest_button = W.Button(description="Backtest", button_style="primary", icon="line-chart")
        self.backtest_button.add_class("blankly-panel-backtest")
        self.backtest_button.on_click(lambda _: panel.submit(self.backtest, cancellable=True))

    def form(self) -> list[W.Widget]:
        return [self.fields]

    def actions(self) -> list[W.Widget]:
        return [self.backtest_button]

    def on_mode(self, mode: str) -> None:
        if self.box is not None:
            show(self.box, mode == "backtest")
        show(self.backtest_button, mode == "backtest")

    def args(self) -> dict:
        """The kwargs of Blankly's ``strategy.backtest()`` from the fields, read as the magics and the
        CLI read --start/--end/--to/--initial; a mistake is a BacktestArgsError for the status line."""
        return backtest_args(start=self.start_input.value, end=self.end_input.value, to=self.to_input.value,
                             initial=self.initial_input.value)

    def backtest(self) -> None:
        result = self.panel.run("backtest", self.args())
        if result is not None:
            self.show(result)

    def show(self, result: Any) -> None:
        panel = self.panel
        # The metrics table, trades and (unless %config BlanklyMagics.show_chart = False) the equity chart.
        # No "r = _ ..." hints: those are for the magics' cells; here the buttons do the work.
        panel.show_html(result.to_html(chart=panel.config.show_chart, hints=False))
        if result.ok:  # the numbers are in the results below; the status line stays short
            panel.say(f"Backtest {result.backtest_id} completed: {result.trade_count} trades.", "ok")
        elif not result.done:  # stopped waiting, or BlanklyMagics.timeout passed: the server keeps it
            panel.say(panel.last_note or result.headline())
        else:  # the reason is in the result below: said once
            panel.say(f"Backtest {result.backtest_id} {result.status}: the reason is below.", "error")
