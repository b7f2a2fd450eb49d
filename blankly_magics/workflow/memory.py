"""What a notebook remembers between runs: its model on each server, and its unanswered upload.

A small side file next to the notebook (``.blankly_magics.json``; the working folder
when the cells came from a kernel's history) keeps, per server and notebook:

- ``models``: the model the notebook last ran on that server, so the next run adds a
  version to it instead of making another;
- ``pending``: an upload to a NEW model, written just before it is sent. If its answer
  never comes (an interrupt, a dead kernel, a broken connection), the next run finds
  the model that upload made (see ``lookup.find_uploaded_model``) instead of making a
  second one. Recording the model settles it.

Entries are keyed by :func:`server_key` and the notebook's file name: the server's
identity when it reports one (the same server on any URL, so the embedded server
back on another port keeps its models), else its URL. Entries an older version
keyed by the URL are still read while that URL is the server's, and move to the
identity's key when next written. A folder that
cannot be written (read-only) raises OSError from the writers; the flows say so in a
note and go on: forgetting a model must never fail a run that worked.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ..files import read_json, write_json

if TYPE_CHECKING:
    from ..session import Session

SIDE_FILE = ".blankly_magics.json"
HISTORY = "(kernel history)"  # the notebook's name when the cells came from the kernel's history


def server_key(session: "Session") -> str:
    """The server a model lives on, as the side file names it: ``server:ID`` when the server
    reports its identity, else its URL."""
    server_id = getattr(session.client, "server_id", None)
    return f"server:{server_id}" if server_id else session.url


class Memory:
    """One notebook's memory of one server; ``also`` are older keys of that server, still read."""

    def __init__(self, notebook: Optional[Path], server: str, also: Sequence[str] = ()) -> None:
        self.path = (Path(notebook).parent if notebook else Path.cwd()) / SIDE_FILE
        name = Path(notebook).name if notebook else HISTORY
        self.key = f"{server}|{name}"
        self.old_keys = [f"{key}|{name}" for key in also if key != server]

    @classmethod
    def of(cls, session: "Session", notebook: Optional[Path]) -> "Memory":
        return cls(notebook, server_key(session), also=(session.url,))

    def _data(self) -> dict:
        data = read_json(self.path, {})
        return data if isinstance(data, dict) else {}

    def _entry(self, section: str) -> Optional[dict]:
        entries = self._data().get(section)
        for key in (self.key, *self.old_keys):
            entry = entries.get(key) if isinstance(entries, dict) else None
            if isinstance(entry, dict):
                return entry
        return None

    def _write(self, section: str, entry: dict, settle: Optional[str] = None) -> Path:
        data = self._data()
        entries = data.get(section) if isinstance(data.get(section), dict) else {}
        for key in self.old_keys:  # moved to the identity's key
            entries.pop(key, None)
        entries[self.key] = entry
        data[section] = entries
        settled = data.get(settle) if settle else None
        if isinstance(settled, dict):
            for key in (self.key, *self.old_keys):
                settled.pop(key, None)
            data[settle] = settled
        return write_json(self.path, data)

    def model(self) -> Optional[dict]:
        """{"modelId", "projectId", "name"} of the model this notebook last ran here, or None."""
        entry = self._entry("models")
        return entry if entry and entry.get("modelId") else None

    def remember_model(self, model_id: str, project_id: Optional[str], name: Optional[str]) -> Path:
        """Record the model (and settle the pending upload it answers). Raises OSError."""
        entry = {"modelId": model_id, "projectId": project_id, "name": name, "updatedAt": time.time()}
        return self._write("models", entry, settle="pending")

    def pending(self) -> Optional[dict]:
        """{"name", "projectId", "sha256", "sentAt"} of the unanswered upload to a new model, or None."""
        entry = self._entry("pending")
        return entry if entry and entry.get("sha256") and entry.get("name") else None

    def remember_pending(self, name: str, project_id: Optional[str], sha256: str) -> Path:
        """Record an upload to a new model before it is sent. Raises OSError."""
        entry = {"name": name, "projectId": project_id, "sha256": sha256, "sentAt": time.time()}
        return self._write("pending", entry)
