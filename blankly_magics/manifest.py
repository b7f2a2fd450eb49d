"""Where the settings files' defaults used to live; they are in ``blankly_magics.export.manifest``."""
from __future__ import annotations

from .export.manifest import *  # noqa: F401,F403
from .export.manifest import __all__  # noqa: F401
