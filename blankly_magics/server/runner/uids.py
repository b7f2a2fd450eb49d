"""User ids of their own for runs under a server running as root (see launch.py)."""
from __future__ import annotations

import threading
import zlib
from pathlib import Path

from .executor import RunFailed


class RunUids:
    """Unprivileged user ids for runs under a root server, one per running run.

    Spread by the data dir so two servers on one machine rarely share one; no
    account is needed for them, and nothing outside a run's sandbox runs as them."""

    SIZE = 10_000

    def __init__(self, data_dir: Path) -> None:
        self.base = 1_800_000_000 + (zlib.crc32(str(data_dir).encode()) % 1000) * self.SIZE
        self._free = list(range(self.SIZE - 2, -1, -1))  # the last one is the start-up probe's
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            if not self._free:
                raise RunFailed("too many runs at once on this server")
            return self.base + self._free.pop()

    def give_back(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid - self.base)
