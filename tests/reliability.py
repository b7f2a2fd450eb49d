"""The reliability tests' shared recorder: tests write the figures they proved.

    from tests.reliability import record
    record("bad input", "upload routes (hypothesis)", what="...", cases=210, statuses={"400": 150})

Figures land in ``test-artifacts/reliability.json`` (``$RELIABILITY_JSON`` overrides it),
merged under a file lock and written atomically, so tests in any order (or in parallel)
each add their own entry. A test records only after its assertions passed: what is in the
file was shown to hold. ``tests/report_reliability.py`` turns the file into the docs'
reliability page (docs/reliability.md).
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from blankly_magics.server.__main__ import _write_json_atomic as write_json_atomic

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PATH = REPO / "test-artifacts" / "reliability.json"
SECTIONS = ("bad input", "faults", "load", "secrets")


def artifact_path() -> Path:
    return Path(os.environ.get("RELIABILITY_JSON") or DEFAULT_PATH)


def load(path: Path | None = None) -> dict[str, Any]:
    """The recorded figures: {"sections": {section: {check: figures}}, "updatedAt"}."""
    path = path or artifact_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"sections": {}}
    return data if isinstance(data, dict) and isinstance(data.get("sections"), dict) else {"sections": {}}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record(section: str, check: str, **figures: Any) -> None:
    """Store one check's figures (replacing what an earlier run recorded for it)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; use one of {SECTIONS}")
    path = artifact_path()
    with _locked(path):
        data = load(path)
        entry = dict(figures, recordedAt=time.strftime("%Y-%m-%d %H:%M:%S"))
        data["sections"].setdefault(section, {})[check] = entry
        data["updatedAt"] = entry["recordedAt"]
        write_json_atomic(path, data)  # the server's own temp-file-then-rename writer
