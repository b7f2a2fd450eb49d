"""Exchange keys: the names the server keeps for you, a form to add one portfolio, and delete.

The values are typed into password boxes and cleared at the click, before the work
starts, so neither the widgets nor the notebook's saved widget state keep them; the
listing shows exchange, portfolio and field names only.
"""
from __future__ import annotations

from typing import Any, Optional

import ipywidgets as W

from ..workflow.keys import EXCHANGE_FIELDS, delete_keys, list_keys, set_keys
from .section import Section
from .widgets import grid, labelled, row


class KeysSection(Section):
    name = "keys"
    title = "Exchange keys"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.listing = W.HTML()
        self.exchange = labelled(W.Dropdown(options=list(EXCHANGE_FIELDS), value="alpaca"), "Exchange")
        self.portfolio = labelled(W.Text(placeholder="e.g. main"), "Portfolio")
        self.inputs: dict[str, W.Password] = {}
        self.fields_box = grid()
        self.sandbox = W.Checkbox(value=False, description="Sandbox keys", indent=False)
        self.store_button = W.Button(description="Store keys", icon="key")
        self.stored = labelled(W.Dropdown(options=[]), "Stored")
        self.delete_button = W.Button(description="Delete", icon="trash")
        self.exchange.observe(lambda _: self._fields(), names="value")
        self.store_button.on_click(self._on_store)
        self.delete_button.on_click(self._on_delete)
        self._fields()

    def form(self) -> list[W.Widget]:
        return [self.listing, grid(self.exchange, self.portfolio), self.fields_box,
                row(self.sandbox, self.store_button), row(self.stored, self.delete_button)]

    def buttons(self) -> list[W.Button]:
        return [self.store_button, self.delete_button]

    def _fields(self) -> None:
        self.inputs = {name: labelled(W.Password(), name) for name in EXCHANGE_FIELDS[self.exchange.value]}
        self.fields_box.children = tuple(self.inputs.values())

    def on_session(self, session: Optional[Any]) -> None:
        if session is None:
            self.listing.value = "<i>Sign in to see the exchange keys the server keeps for you.</i>"
            self.stored.options = []

    def load(self, session: Any) -> None:
        listing = list_keys(session)
        self.listing.value = listing.to_html() if listing.rows else (
            "<i>No exchange keys stored: add a portfolio below, or run <code>%blankly keys import keys.json"
            "</code>. Your runs get them as keys.json.</i>")
        choices = [(f"{r['exchange']}/{r['portfolio']}", (r["exchange"], r["portfolio"])) for r in listing.rows]
        self.stored.options = choices
        self.stored.value = choices[0][1] if choices else None

    def _on_store(self, _button: Any) -> None:
        exchange, portfolio, sandbox = self.exchange.value, self.portfolio.value.strip(), self.sandbox.value
        values = [box.value for box in self.inputs.values()]
        for box in self.inputs.values():
            box.value = ""  # gone from the widgets before anything else happens
        self.panel.submit(lambda: self.store(exchange, portfolio, values, sandbox))

    def store(self, exchange: str, portfolio: str, values: list[str], sandbox: bool) -> None:
        from .frame import PanelError

        if not portfolio:
            raise PanelError("Name the portfolio the keys are for (Blankly's keys.json names one per account)")
        typed = iter(values)
        session = self.panel.session()
        line = set_keys(session, exchange, portfolio, lambda _label: next(typed), sandbox=sandbox)
        self.load(session)
        self.panel.say(line + ".", "ok")

    def _on_delete(self, _button: Any) -> None:
        choice = self.stored.value
        self.panel.submit(lambda: self.delete(choice))

    def delete(self, choice: Optional[tuple[str, str]]) -> None:
        from .frame import PanelError

        if not choice:
            raise PanelError("No stored keys to delete")
        exchange, portfolio = choice
        session = self.panel.session()
        line = delete_keys(session, exchange, portfolio)
        self.load(session)
        self.panel.say(line + ".", "ok")
