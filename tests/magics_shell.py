"""A real IPython shell for magics tests, as jupysql's tests use: history kept in
memory only, and run_cell re-raises what the cell raised.

Fixtures (registered in tests/conftest.py): ``cells`` -- a fresh shell with the
extension loaded, whose ``Cells`` runner keeps everything the cells printed and
checks no secret was among it; ``alice`` -- signed in to a real server as alice;
``isolated`` -- the private home (tests/fixtures_home.py) under that name.
"""
from __future__ import annotations

import _thread
import threading
import time
from typing import Callable

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config


class TestingShell(InteractiveShell):
    __test__ = False  # not a pytest test class

    def run_cell(self, *args, **kwargs):
        result = super().run_cell(*args, **kwargs)
        result.raise_error()
        return result

    @classmethod
    def fresh(cls) -> "TestingShell":
        config = Config()
        config.HistoryAccessor.enabled = False  # no SQLite history file per shell
        shell = cls(config=config)
        shell.displayhook.flush = lambda: None  # IPython's gc.collect() there can hang at exit
        return shell

    def run_as_cells(self, *sources: str) -> None:
        """Run sources as notebook cells would, recorded in the input history."""
        for source in sources:
            self.run_cell(source, store_history=True)

    def record_as_cells(self, *sources: str) -> None:
        """Put sources in the input history as if they had run (without their side effects)."""
        for source in sources:
            self.history_manager.store_inputs(self.execution_count, source, source)
            self.execution_count += 1


class Cells:
    """Runs cells in the shell and keeps everything they printed, to check for secrets at the end."""

    def __init__(self, ip: TestingShell, capsys: pytest.CaptureFixture) -> None:
        self.ip = ip
        self.capsys = capsys
        self.seen: list[str] = []
        self.secrets: set[str] = set()

    def run(self, source: str) -> str:
        try:
            self.ip.run_cell(source)
        finally:
            out, err = self.capsys.readouterr()
            self.seen.append(out + err)
        return out + err

    def fails(self, source: str) -> str:
        """Run a cell that must fail with a UsageError shown as one line; return that message."""
        with pytest.raises(UsageError) as info:
            self.run(source)
        printed = self.seen[-1]
        message = str(info.value)
        assert printed.endswith(f"UsageError: {message}\n"), printed
        assert "Traceback" not in printed and "\n" not in message
        return message

    @property
    def last(self):
        return self.ip.user_ns.get("_")

    def check_no_secret(self) -> None:
        from blankly_magics import session as sessions

        current = sessions.current()
        if current is not None and current.client._id_token is not None:
            self.secrets.add(current.client._id_token.reveal())
        text = "\n".join(self.seen)
        for secret in self.secrets:
            assert secret not in text


@pytest.fixture
def isolated(private_home):
    """The shared private home (tests/fixtures_home.py), under the name these tests use."""
    return private_home


@pytest.fixture
def cells(isolated, capsys):
    from blankly_magics import session as sessions

    ip = TestingShell.fresh()
    ip.run_cell("%load_ext blankly_magics")
    runner = Cells(ip, capsys)
    yield runner
    try:
        runner.check_no_secret()
    finally:
        sessions.sign_out(revoke=False)


@pytest.fixture
def alice(cells, local_server, monkeypatch):
    """Signed in as alice with a token taken from an environment variable."""
    token = local_server.refresh_token("alice")
    cells.secrets.add(token)
    monkeypatch.setenv("ALICE_TOKEN", token)
    out = cells.run(f"%blankly_login --url {local_server.url} --token-env ALICE_TOKEN")
    assert out == f"Signed in to {local_server.url} as alice\n"
    return local_server


def interrupt_when(condition: Callable[[], bool], timeout: float = 120) -> threading.Event:
    """Press Ctrl-C in the main thread (the cell's) once ``condition()`` holds, checked every 0.3 s
    on a thread of its own; the event says whether it was pressed."""
    pressed = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                pressed.set()
                _thread.interrupt_main()
                return
            time.sleep(0.3)

    threading.Thread(target=watch, name="interrupt-when", daemon=True).start()
    return pressed
