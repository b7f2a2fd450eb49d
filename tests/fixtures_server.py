"""Fixtures that run the REAL local deployment server as a subprocess on a free loopback port.

    def test_x(local_server):                      # a fresh server on a fresh data dir
        r = local_server.request("GET", "/project/list", user="alice")

    def test_y(server_factory, tmp_path):          # several, restarts, crashes
        srv = server_factory(tmp_path / "data", args=["--max-upload", "1"])
        srv.kill(); srv.start()                    # SIGKILL, then a new process on the same dir

Handles: ``.url``, ``.data_dir``, ``.proc``, ``.refresh_token(user)``, ``.token_command(user)``, ``.id_token(user)``,
``.headers(user)``, ``.request(method, path, user=..., **requests_kwargs)``, ``.start()``,
``.stop()`` (SIGTERM, clean), ``.kill()`` (SIGKILL, a crash), ``.restart()``, ``.snapshot()``.
Teardown always stops every server and every process they started.
Also ``write_model_zip(path, ...)``: a small valid model zip built by hand with zipfile;
``serving(root, users, args)``: a server for a module-scoped fixture, users made by ``token --user``;
``wait_for(check, what)``: poll until true; ``snapshot(data_dir)``: rows and files, to diff.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import pytest

START_TIMEOUT = 60.0  # generous: two cores shared by every engineer's tests
STOP_TIMEOUT = 40.0  # the runner gives live models a grace period before killing them
# Files that change on every request or belong to the process, not to stored state.
VOLATILE = {"blankly.db", "blankly.db-wal", "blankly.db-shm", "server.json", "server.lock"}
LOG_DIRS = ("runs",)  # run logs and pid files: the runner's, allowed to change

TRIVIAL_SCRIPT = "print('hello from a trivial model')\n"


def write_model_zip(
    path: Path,
    *,
    manifest: Optional[Mapping[str, Any]] = None,
    files: Optional[Mapping[str, str | bytes]] = None,
    python_version: Optional[str] = None,
) -> Path:
    """Write a model zip: ``model/blankly.json`` plus ``files`` (paths under model/).

    Defaults make it valid: main script ``bot.py`` (a trivial print) and ``requirements.txt``.
    """
    version = python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"
    data = {
        "main_script": "./bot.py",
        "python_version": version,
        "requirements": "./requirements.txt",
        "working_directory": ".",
        "type": "strategy",
    }
    data.update(manifest or {})
    members: dict[str, str | bytes] = {"bot.py": TRIVIAL_SCRIPT, "requirements.txt": ""}
    members.update(files or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/blankly.json", json.dumps(data, indent=2))
        for name, content in members.items():
            zf.writestr(f"model/{name}", content)
    return path


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120.0, poll: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@dataclass(frozen=True)
class Snapshot:
    """Stored state of a data dir: every table's rows and every file but logs and volatiles."""

    rows: dict[str, frozenset]
    files: frozenset

    def diff(self, other: "Snapshot") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table in set(self.rows) | set(other.rows):
            added = other.rows.get(table, frozenset()) - self.rows.get(table, frozenset())
            removed = self.rows.get(table, frozenset()) - other.rows.get(table, frozenset())
            if added or removed:
                out[table] = {"added": sorted(map(str, added)), "removed": sorted(map(str, removed))}
        if self.files != other.files:
            out["files"] = {
                "added": sorted(other.files - self.files),
                "removed": sorted(self.files - other.files),
            }
        return out


def snapshot(data_dir: Path) -> Snapshot:
    rows: dict[str, frozenset] = {}
    db = data_dir / "blankly.db"
    if db.exists():
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=15)
        try:
            tables = [
                r[0]
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            for table in tables:
                rows[table] = frozenset(conn.execute(f"SELECT * FROM {table}").fetchall())
        finally:
            conn.close()
    files = set()
    for path in data_dir.rglob("*"):
        rel = path.relative_to(data_dir)
        if rel.parts[0] in LOG_DIRS or rel.name in VOLATILE or path.is_dir():
            continue
        files.add(rel.as_posix())
    return Snapshot(rows, frozenset(files))


def _descendants(pid: int) -> list:
    """psutil handles of a process's descendants (a handle never hits a reused pid)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_procs(procs: Sequence[Any]) -> None:
    import psutil

    killed = []
    for proc in procs:
        try:
            proc.kill()
            killed.append(proc)
        except psutil.Error:
            pass
    psutil.wait_procs(killed, timeout=10)


class ServerHandle:
    """One data dir served by the real server process (restartable)."""

    def __init__(self, data_dir: Path, log_path: Path, args: Sequence[str] = (),
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.args = list(args)
        self.env = dict(env) if env is not None else None  # the server's environment (None: this one's)
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self._tokens: dict[str, str] = {}
        self._strays: list[Any] = []  # children of killed servers (psutil handles), for teardown

    def __repr__(self) -> str:
        return f"ServerHandle(url={self.url!r}, data_dir={str(self.data_dir)!r})"

    # -- process -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "ServerHandle":
        if self.running:
            raise RuntimeError("this server is already running")
        cmd = [
            sys.executable, "-m", "blankly_magics.server", "--port", "0",
            "--data-dir", str(self.data_dir), "--log-level", "warning", *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=self.env,
            )
        server_file = self.data_dir / "server.json"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                info = json.loads(server_file.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.proc.pid:
                self.url = info["url"]
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.proc.returncode} before listening:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the server did not start in {START_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> Optional[int]:
        """SIGTERM and wait: a clean shutdown. Returns the exit code (None if not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            children = _descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._strays.extend(children)
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server alone, as a crash would; its children live on until a restart."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._strays.extend(_descendants(self.proc.pid))
        self.proc.kill()
        self.proc.wait(30)

    def restart(self) -> "ServerHandle":
        self.stop()
        return self.start()

    def close(self) -> None:
        """Teardown: stop the server and anything it or an earlier process of it started."""
        procs = _descendants(self.proc.pid) if self.running else []
        try:
            self.stop()
        finally:
            _kill_procs(procs + self._strays)
            if self.proc is not None and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def log(self, tail: int = 8000) -> str:
        """The end of the server's console output (all of it with ``tail=0``)."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # -- auth ------------------------------------------------------------------------

    def refresh_token(self, user: str = "alice") -> str:
        """A refresh token for ``user`` (created when new), issued in-process."""
        if user not in self._tokens:
            from blankly_magics.server.tokens import issue_refresh_token

            self._tokens[user] = issue_refresh_token(self.data_dir, user)
        return self._tokens[user]

    def token_command(self, user: str, *args: str) -> subprocess.CompletedProcess:
        """``python -m blankly_magics.server token --user USER`` on this data dir, as an operator types it;
        a printed token becomes the one this handle signs ``user`` in with."""
        done = subprocess.run(
            [sys.executable, "-m", "blankly_magics.server", "token", "--data-dir", str(self.data_dir),
             "--user", user, *args],
            capture_output=True, text=True, timeout=120, env=self.env,
        )
        if done.returncode == 0:
            self._tokens[user] = done.stdout.strip()
        return done

    def id_token(self, user: str = "alice") -> str:
        """An idToken for ``user``, exchanged over HTTP at /auth/token."""
        import requests

        answer = requests.post(
            f"{self.url}/auth/token", data={"refreshToken": self.refresh_token(user)}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()["idToken"]

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"token": self.id_token(user)}

    def user_id(self, user: str = "alice") -> str:
        token = self.id_token(user)
        payload = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["u"]

    def request(self, method: str, path: str, user: Optional[str] = "alice", **kwargs: Any):
        """``requests.request`` against this server, signed in as ``user`` (None: no token)."""
        import requests

        headers = dict(kwargs.pop("headers", None) or {})
        if user is not None:
            headers.setdefault("token", self.id_token(user))
        kwargs.setdefault("timeout", 60)
        return requests.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def health(self) -> dict[str, Any]:
        """GET /health (no token)."""
        return self.request("GET", "/health", user=None).json()

    def snapshot(self) -> Snapshot:
        return snapshot(self.data_dir)


@contextmanager
def serving(root: Path, users: Sequence[str] = (), args: Sequence[str] = (),
            env: Optional[Mapping[str, str]] = None) -> Iterator[ServerHandle]:
    """A real server on ``root/data`` (for module-scoped fixtures), its ``users`` made with the
    ``token --user`` command as an operator makes them; closed at the end."""
    handle = ServerHandle(Path(root) / "data", Path(root) / "server.log", args, env)
    handle.start()
    try:
        for user in users:
            done = handle.token_command(user)
            assert done.returncode == 0, done.stderr
        yield handle
    finally:
        handle.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerHandle]]:
    """Make real servers: ``server_factory(data_dir=None, args=(), start=True, env=None)``."""
    handles: list[ServerHandle] = []

    def make(
        data_dir: Optional[Path] = None, args: Sequence[str] = (), start: bool = True,
        env: Optional[Mapping[str, str]] = None,
    ) -> ServerHandle:
        n = len(handles)
        handle = ServerHandle(
            Path(data_dir) if data_dir else tmp_path / f"server-data-{n}",
            tmp_path / f"server-{n}.log",
            args,
            env,
        )
        handles.append(handle)
        return handle.start() if start else handle

    yield make
    for handle in handles:
        handle.close()


@pytest.fixture
def local_server(server_factory: Callable[..., ServerHandle]) -> ServerHandle:
    """A real server on a fresh data dir, stopped after the test."""
    return server_factory()
