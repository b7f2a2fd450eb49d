"""``python -m blankly_magics ...``: the ``blankly-magics`` command (see :mod:`blankly_magics.cli`)."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
