"""One configuration for the magics, the panel, the CLI and scripts; the environment is read here only.

``BlanklyConfig`` is a traitlets ``Configurable``. The magics class subclasses it,
so ``%config BlanklyMagics.url = ...`` (or ``c.BlanklyConfig.url`` in an IPython
profile) sets the options every face reads: ``load_ipython_extension`` makes the
magics the *active* configuration, and the panel reads ``active()``. A script
makes its own, ``BlanklyConfig(url="http://127.0.0.1:8127")``, and the CLI fills
one from its options.

A trait left at None falls back to its environment variable at the moment it is
needed (``server_url()``, ``home()``), so setting a variable after the extension
loaded still counts, and ``%config`` shows what the user set, not a snapshot.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from traitlets import Bool, Float, List, Unicode
from traitlets.config.configurable import Configurable

ENV_URL = "BLANKLY_DEPLOY_URL"  # the deployment server; unset: the embedded local one
ENV_HOME = "BLANKLY_MAGICS_HOME"  # the embedded server's data dir
ENV_NOTEBOOK = "BLANKLY_NOTEBOOK_PATH"  # the notebook whose cells are deployed
ENV_TOKEN = "BLANKLY_REFRESH_TOKEN"  # a refresh token for a remote server
ENV_JUPYTER_SESSION = "JPY_SESSION_NAME"  # JupyterLab's name for the kernel's notebook


def environ(name: str) -> Optional[str]:
    """The variable's value without surrounding blanks; None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def data_home() -> Path:
    """``$BLANKLY_MAGICS_HOME``, else ``$XDG_DATA_HOME`` (or ``~/.local/share``) + ``/blankly_magics``."""
    home = environ(ENV_HOME)
    if home:
        return Path(home).expanduser()
    base = environ("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "blankly_magics"


class BlanklyConfig(Configurable):
    """Where models go and how runs behave, for every face."""

    url = Unicode(
        None, allow_none=True, config=True,
        help="Deployment server URL. None: BLANKLY_DEPLOY_URL, else the embedded local server.",
    )
    plan_backtest = Unicode(None, allow_none=True, config=True, help="Backtest plan; None: the server's first plan.")
    plan_live = Unicode(None, allow_none=True, config=True, help="Live plan; None: the server's first plan.")
    python = Unicode(
        None, allow_none=True, config=True, help="Python version (X.Y) models run with; None: this kernel's."
    )
    include = List(Unicode(), default_value=[], config=True, help="Extra files or folders put in every model zip.")
    notebook = Unicode(
        None, allow_none=True, config=True,
        help="Notebook file whose cells are deployed; None: BLANKLY_NOTEBOOK_PATH, else found automatically "
             "(see %%blankly_deploy?).",
    )
    wait = Bool(True, config=True, help="Wait for backtests to finish and show their results.")
    show_chart = Bool(True, config=True, help="Show the equity curve chart with backtest results.")
    poll_interval = Float(
        0.5, config=True,
        help="Seconds between status checks while waiting, once a backtest has been queued or running for "
             "5 s (they are 0.1 s apart before, so a short backtest is seen at once); they grow to 2 s.",
    )
    timeout = Float(
        None, allow_none=True, config=True, help="Stop waiting for a backtest after this many seconds; None: no limit."
    )
    data_dir = Unicode(
        None, allow_none=True, config=True,
        help="Data dir of the embedded local server. None: BLANKLY_MAGICS_HOME, else ~/.local/share/blankly_magics.",
    )
    server_timeout = Float(30.0, config=True, help="Seconds to wait for the embedded local server to start.")

    def server_url(self) -> Optional[str]:
        """The server to sign in to; None means the embedded local server."""
        return self.url or environ(ENV_URL)

    def home(self) -> Path:
        """The embedded server's data dir."""
        return Path(self.data_dir).expanduser() if self.data_dir else data_home()

    def plan(self, kind: str) -> Optional[str]:
        """The plan set for ``kind`` ("backtest" or "live"), or None for the server's first."""
        return self.plan_live if kind == "live" else self.plan_backtest


_active: Optional[BlanklyConfig] = None


def active() -> BlanklyConfig:
    """The configuration the faces share: the loaded magics' (``%config``), else a default one."""
    global _active
    if _active is None:
        _active = BlanklyConfig()
    return _active


def set_active(config: Optional[BlanklyConfig]) -> None:
    """Make ``config`` the shared one (None: back to a default made on next use)."""
    global _active
    _active = config
