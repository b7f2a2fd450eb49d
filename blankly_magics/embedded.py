"""The embedded deployment server: one per user, started on demand, shared by kernels.

``ensure_local_server`` attaches to the server named in ``DIR/server.json`` when
its process is alive and ``/health`` answers as ours; otherwise it starts
``python -m blankly_magics.server`` detached (it outlives the kernel, so the next
notebook attaches instead of starting another) and waits for it. A file lock makes
two kernels starting at once end up with one server.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

SERVICE_NAME = "blankly-magics-deployment-server"
SERVER_JSON = "server.json"
SERVER_LOG = "server.log"
START_LOCK = "start.lock"  # not server.lock: the server holds that one for its whole life
TOKEN_FILE = "local-token"
LOCAL_USER = "local"
_MAX_LOG = 5 * 1024 * 1024  # server.log is rotated once past this, at start

PathArg = Union[str, "os.PathLike[str]", None]

# Servers started by this process, kept so they can be reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen] = {}


class EmbeddedServerError(RuntimeError):
    """The local server could not be started or reached; the message says why."""


@dataclass(frozen=True)
class LocalServer:
    url: str
    pid: int
    data_dir: Path
    started: bool = False  # True when this call started it, False when it attached


def data_home() -> Path:
    """``$BLANKLY_MAGICS_HOME``, else ``$XDG_DATA_HOME`` (or ``~/.local/share``) + ``/blankly_magics``."""
    home = os.environ.get("BLANKLY_MAGICS_HOME")
    if home:
        return Path(home).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "blankly_magics"


def _dir(data_dir: PathArg) -> Path:
    path = Path(data_dir).expanduser() if data_dir is not None else data_home()
    try:
        # exist_ok: two kernels may create it at the same moment (both then share one server).
        path.mkdir(parents=True, mode=0o700, exist_ok=True)  # holds tokens and users' models: owner only
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create the local server's data dir {path}: {exc.strerror}; "
            "set BLANKLY_MAGICS_HOME to a writable directory"
        ) from None
    return path.resolve()


def _read_server_json(data_dir: Path) -> Optional[dict]:
    try:
        info = json.loads((data_dir / SERVER_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(info, dict) and isinstance(info.get("url"), str) and isinstance(info.get("pid"), int):
        return info
    return None


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _is_our_server(pid: int) -> bool:
    """Guards against a recycled pid: only a ``blankly_magics.server`` process is ours to stop."""
    import psutil

    try:
        return "blankly_magics.server" in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _healthy(url: str, timeout: float = 2.0) -> bool:
    import urllib.request

    # No proxies: the server is on loopback, and an HTTP_PROXY must not see this request.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/health", timeout=timeout) as answer:
            body = json.loads(answer.read(4096))
    except Exception:
        return False
    return isinstance(body, dict) and body.get("service") == SERVICE_NAME


def _attach(data_dir: Path) -> Optional[LocalServer]:
    info = _read_server_json(data_dir)
    if info and _alive(info["pid"]) and _healthy(info["url"]):
        return LocalServer(info["url"], info["pid"], data_dir)
    return None


class _Lock:
    """An exclusive ``flock`` on ``DIR/start.lock``, waited for up to ``timeout`` seconds."""

    def __init__(self, data_dir: Path, timeout: float) -> None:
        self.path = data_dir / START_LOCK
        self.timeout = timeout
        self.handle: Any = None

    def __enter__(self) -> "_Lock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, the health check still avoids most doubles
            return self
        self.handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.handle.close()
                    raise EmbeddedServerError(
                        f"another process has held {self.path} for {self.timeout:g} s while starting the "
                        "local server; try again, or delete the file if no kernel is starting one"
                    ) from None
                time.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases the flock


def _log_tail(data_dir: Path, lines: int = 15) -> str:
    try:
        with open(data_dir / SERVER_LOG, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return "(no server.log)"
    return "\n".join(text.splitlines()[-lines:]) or "(server.log is empty)"


def _start(data_dir: Path, timeout: float) -> LocalServer:
    log_path = data_dir / SERVER_LOG
    if log_path.exists() and log_path.stat().st_size > _MAX_LOG:
        os.replace(log_path, data_dir / (SERVER_LOG + ".1"))
    try:
        (data_dir / SERVER_JSON).unlink()  # stale: its server is gone or not answering
    except FileNotFoundError:
        pass
    env = dict(os.environ)
    # The child must run this same copy of the package, even from a source checkout.
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "blankly_magics.server", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(data_dir)]
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=str(data_dir),
            env=env, start_new_session=True, close_fds=True,
        )
    _children[process.pid] = process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            _children.pop(process.pid, None)
            raise EmbeddedServerError(
                f"the local deployment server exited with code {code} while starting; "
                f"the end of {log_path}:\n{_log_tail(data_dir)}"
            )
        info = _read_server_json(data_dir)
        if info and info["pid"] == process.pid and _healthy(info["url"]):
            return LocalServer(info["url"], process.pid, data_dir, started=True)
        time.sleep(0.1)
    _terminate(process.pid, 5.0)
    raise EmbeddedServerError(
        f"the local deployment server did not come up within {timeout:g} s; "
        f"the end of {log_path}:\n{_log_tail(data_dir)}"
    )


def ensure_local_server(data_dir: PathArg = None, timeout: float = 30) -> LocalServer:
    """The user's local server: the running one, or a new one started now."""
    directory = _dir(data_dir)
    server = _attach(directory)
    if server is not None:
        return server
    with _Lock(directory, timeout):
        # Another kernel may have started it while we waited for the lock.
        return _attach(directory) or _start(directory, timeout)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL the server's whole process group (its runs included)."""
    import psutil

    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            try:
                group = os.getpgid(pid)
            except OSError:
                group = None
            if group == pid:  # started with start_new_session: the group is the server's alone
                os.killpg(pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait(timeout)
    except psutil.NoSuchProcess:
        pass
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()  # reap it


def stop_local_server(data_dir: PathArg = None, timeout: float = 10) -> bool:
    """Stop the local server of ``data_dir``; True if one was running."""
    directory = _dir(data_dir)
    info = _read_server_json(directory)
    if not info:
        return False
    pid = info["pid"]
    running = _alive(pid) and _is_our_server(pid)
    if running:
        _terminate(pid, timeout)
    try:
        (directory / SERVER_JSON).unlink()  # a clean shutdown removed it; a kill did not
    except FileNotFoundError:
        pass
    return running


def local_refresh_token(data_dir: PathArg, renew: bool = False) -> str:
    """The refresh token for the local user, cached in ``DIR/local-token`` (0600).

    ``renew=True`` issues a new one: for when the server refused the cached one
    (its data dir was wiped, say)."""
    directory = _dir(data_dir)
    path = directory / TOKEN_FILE
    if not renew:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            token = ""
        if token:
            return token
    from .auth import write_private
    from .server.tokens import issue_refresh_token

    try:
        token = issue_refresh_token(directory, LOCAL_USER)
        write_private(path, token)
    except Exception as exc:  # a damaged database or a full disk: say where
        raise EmbeddedServerError(f"cannot issue a token for the local server in {directory}: {exc}") from None
    return token
