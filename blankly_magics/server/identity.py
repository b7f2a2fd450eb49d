"""The server's identity: a stable id kept in its data dir.

A client remembers what it made on a server by this id, not by the server's URL,
which changes when a server comes back on another port (or behind another name).
The id is made once, at the data dir's first start, and read at every start after.
"""
from __future__ import annotations

import re
import uuid
from pathlib import Path

from ..files import atomic_write

IDENTITY_FILE = "server-id"
_ID = re.compile(r"[0-9a-f]{32}")


def server_id(data_dir: Path) -> str:
    """The data dir's server id (32 hex digits), made and kept in ``DIR/server-id`` when new."""
    path = Path(data_dir) / IDENTITY_FILE
    try:
        kept = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        kept = ""
    if _ID.fullmatch(kept):
        return kept
    made = uuid.uuid4().hex
    atomic_write(path, made + "\n")  # only one server holds a data dir: no other writer races it
    return made
