"""``%load_ext blankly_magics``: one BlanklyMagics per shell, registered, configurable, the active config."""
from __future__ import annotations

from typing import Any, Optional

from .. import config
from .magic import BlanklyMagics


def get_magics(shell: Any = None) -> Optional[BlanklyMagics]:
    """The BlanklyMagics instance registered on ``shell`` (default: the running one)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return None
    found = shell.magics_manager.registry.get(BlanklyMagics.__name__)
    return found if isinstance(found, BlanklyMagics) else None


def load_ipython_extension(ipython: Any) -> None:
    """Create one BlanklyMagics, register it, make it configurable with %config and the shared config."""
    if get_magics(ipython) is not None:
        return  # loaded already: keep the instance and its settings
    magics = BlanklyMagics(shell=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    config.set_active(magics)


def unload_ipython_extension(ipython: Any) -> None:
    magics = get_magics(ipython)
    if magics is None:
        return
    manager = ipython.magics_manager
    for kind, names in magics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(BlanklyMagics.__name__, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    if config.active() is magics:
        config.set_active(None)
