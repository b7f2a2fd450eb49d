"""A private home for every test that signs in or starts the embedded server: the real
user's Blankly token file, data dirs and environment hints are never touched."""
from __future__ import annotations

import socket
from pathlib import Path

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
