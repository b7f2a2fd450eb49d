"""A private home for every test that signs in or starts the embedded server: the real
user's Blankly token file, data dirs and environment hints are never touched."""
from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

# Environment that would point a test at the user's own server, token or notebook.
OUTSIDE_HINTS = (
    "BLANKLY_DEPLOY_URL",
    "BLANKLY_REFRESH_TOKEN",
    "BLANKLY_NOTEBOOK_PATH",
    "JPY_SESSION_NAME",
)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME (the Blankly CLI's auth.json), XDG data, the embedded server's data
    (``tmp_path / "bm"``) and Jupyter's runtime dir, all under ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("BLANKLY_MAGICS_HOME", str(tmp_path / "bm"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    for name in OUTSIDE_HINTS:
        monkeypatch.delenv(name, raising=False)
    return home


_environment_writes: list[list[str]] = []  # one list per active recorder


def _audit(event: str, args: tuple) -> None:
    if event == "os.putenv" and _environment_writes:
        value = os.fsdecode(args[1])
        for writes in _environment_writes:
            writes.append(value)


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only while a recorder is active


@contextmanager
def environment_writes() -> Iterator[list[str]]:
    """Every value put into this process's environment meanwhile -- what a child process
    started at that moment (the embedded server, a backtest) would inherit."""
    writes: list[str] = []
    _environment_writes.append(writes)
    try:
        yield writes
    finally:
        _environment_writes.remove(writes)


def assert_not_in_environment(secret: str, writes: list[str]) -> None:
    assert not any(secret in value for value in writes), "the secret was put in the environment"
    assert not any(secret in value for value in os.environ.values())
