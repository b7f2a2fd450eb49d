"""blankly_magics: from a notebook's Blankly strategy to a backtest or live deployment.

The plain-Python pipeline (``export`` -> ``manifest`` -> ``bundle`` -> ``client``) and
the ``workflow`` layer over it import neither IPython nor ipywidgets; the faces (the
``magics``, the ``panel``, the ``cli``) read input and render what the workflow
returns. ``%load_ext blankly_magics`` registers the magics; everything heavy is
imported when first used, so loading stays cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "compare", "load_ipython_extension", "unload_ipython_extension", "panel"]


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext blankly_magics``: register the magics on this shell."""
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)


def panel(**kwargs: Any) -> Any:
    """Show the deployment panel (ipywidgets); the same as ``%blankly panel``."""
    # Importing the subpackage blankly_magics.panel replaces this attribute with the package;
    # panel/__init__.py makes that module callable with the same meaning, so either one answers
    # blankly_magics.panel(...) (tests/panel/test_panel.py checks each import order in a fresh process).
    from .panel import show_panel

    return show_panel(**kwargs)


def compare(*backtest_ids: str) -> Any:
    """Completed backtests side by side, with the signed-in session (``%blankly_login`` first):
    ``.table`` is a DataFrame of their metrics, one column per backtest; ``.figure()`` overlays their
    equity curves. The same as ``%blankly compare ID1 ID2 ...``."""
    from . import session
    from .workflow import compare as compare_backtests

    return compare_backtests(session.require(), backtest_ids)
