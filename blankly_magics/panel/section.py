"""What a panel section is: the contract every section module fulfils.

The panel (``frame.BlanklyPanel``) lays its sections out in the order it is given
them and reaches each by its ``name`` (``panel.target``, ``panel.cells``...). A
section puts widgets in up to three places: ``form()`` (a titled box in the form,
when it has a ``title``), ``actions()`` (buttons in the action row, ordered by
``rank``) and ``view()`` (below the status line and the results). It hears about
the session and the mode, and runs network work through ``panel.submit``.

To add a feature (exchange keys, a sweep, a comparison), write a section module
and pass its class in ``BlanklyPanel(sections=SECTIONS + (KeysSection,))``. The
panel itself leans on three sections: ``sign_in`` (who is signed in), ``target``
(``request(kind, backtest_args)``: the run the pickers describe; ``adopt(model_id)``)
and ``cells`` (``source(backtest_args, python)``: what the model is built from);
``panel.run(kind, backtest_args)`` runs them through the workflow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import ipywidgets as W

if TYPE_CHECKING:
    from ..session import Session
    from .frame import BlanklyPanel


class Section:
    name = ""  # the panel's attribute for it
    title = ""  # its box's title in the form ("" : no form box)
    rank = 50  # where its actions stand in the action row (lower: further left)

    def __init__(self, panel: "BlanklyPanel") -> None:
        self.panel = panel
        self.box: Optional[W.Widget] = None  # its titled box in the form, once the panel laid it out

    def form(self) -> list[W.Widget]:
        """Widgets in its titled box of the form."""
        return []

    def actions(self) -> list[W.Widget]:
        """Buttons in the action row."""
        return []

    def view(self) -> Optional[W.Widget]:
        """What it shows below the results."""
        return None

    def buttons(self) -> list[W.Button]:
        """The buttons the panel disables while it works."""
        return [w for w in self.actions() if isinstance(w, W.Button)]

    def on_session(self, session: Optional["Session"]) -> None:
        """Signed in (or out, with None): show or clear what depends on it. Widgets only, no network."""

    def load(self, session: "Session") -> None:
        """Signed in: fetch what it shows (on the panel's worker thread)."""

    def on_mode(self, mode: str) -> None:
        """"backtest" or "live" was chosen."""

    def reset(self) -> None:
        """A new run starts (Preview, Backtest, Deploy): clear what the last one left in its view."""

    def close(self) -> None:
        """The panel closes: stop timers, drop widgets it made outside ``form``/``actions``/``view``."""
