"""The deployment panel: sign in, pick, build, backtest or deploy by clicking.

One module per section (``signin``, ``target``, ``cells``, ``backtest``,
``sweep``, ``deploy``, ``logs``, ``activity``, ``keys``, ``compare``), each a ``section.Section``; ``frame.BlanklyPanel`` lays them
out and gives them a worker thread, a status line, results and a Cancel button.
``blankly_magics.panel(...)`` and ``show_panel(...)`` show one.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from .frame import SECTIONS, BlanklyPanel, PanelError, error_line, show_panel
from .section import Section
from .target import NEW_MODEL
from .widgets import plan_label

__all__ = ["BlanklyPanel", "NEW_MODEL", "PanelError", "SECTIONS", "Section", "error_line", "plan_label",
           "show_panel"]


class _CallableModule(types.ModuleType):
    """``blankly_magics.panel()`` must keep working once this package is imported: the import
    system then sets the parent package's ``panel`` attribute (a function) to this module."""

    def __call__(self, **kwargs: Any) -> BlanklyPanel:
        return show_panel(**kwargs)


sys.modules[__name__].__class__ = _CallableModule
