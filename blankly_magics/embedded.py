"""The embedded deployment server: one per user, started on demand, shared by kernels.

``ensure_local_server`` attaches to the server named in ``DIR/server.json`` when
its process is alive and ``/health`` answers as ours; otherwise it starts
``python -m blankly_magics.server`` detached (it outlives the kernel, so the next
notebook attaches instead of starting another) and waits for it. A file lock makes
two kernels starting at once end up with one server. A new server takes the port
the last one had (``DIR/last-port``) when it is free, so its URL stays the same.

The process that starts a server reaps it when it exits (a thread waits on it),
so a server stopped from anywhere leaves no defunct child behind; a stop returns
as soon as the server is gone.

The local user's refresh token comes from the server's own ``token`` command (see
``local_refresh_token``): the kernel never opens the server's database.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .config import data_home
from .errors import BlanklyError
from .files import atomic_write, file_lock, private_dir

SERVICE_NAME = "blankly-magics-deployment-server"
SERVER_JSON = "server.json"
SERVER_LOG = "server.log"
START_LOCK = "start.lock"  # not server.lock: the server holds that one for its whole life
TOKEN_LOCK = "local-token.lock"
TOKEN_FILE = "local-token"
PORT_FILE = "last-port"  # the port the last server listened on: the next one prefers it
LOCAL_USER = "local"
_MAX_LOG = 5 * 1024 * 1024  # server.log is rotated once past this, at start

PathArg = Union[str, "os.PathLike[str]", None]

# Servers started by this process, until their reaper thread has waited on them.
_children: dict[int, subprocess.Popen] = {}
_STOP_POLL = 0.05  # seconds between checks that a stopped server is gone


class EmbeddedServerError(BlanklyError):
    """The local server could not be started or reached; the message says why."""


@dataclass(frozen=True)
class LocalServer:
    url: str
    pid: int
    data_dir: Path
    started: bool = False  # True when this call started it, False when it attached


def _dir(data_dir: PathArg) -> Path:
    path = Path(data_dir).expanduser() if data_dir is not None else data_home()
    try:
        private_dir(path)  # holds tokens and users' models: owner only (two kernels may make it at once)
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


def _locked(path: Path, timeout: float, doing: str) -> Any:
    """``file_lock(path)``, or an EmbeddedServerError naming the file once ``timeout`` passed."""
    from filelock import Timeout

    lock = file_lock(path, timeout)
    try:
        lock.acquire()
    except Timeout:
        raise EmbeddedServerError(
            f"another process has held {path} for {timeout:g} s while {doing}; try again, "
            "or delete the file if no kernel is doing that"
        ) from None
    return lock


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
    deadline = time.monotonic() + timeout
    port = _previous_port(data_dir)
    if port:
        try:
            return _launch(data_dir, port, deadline, timeout)
        except _PortTaken:
            pass  # taken between the check and the server's bind: any free port will do
    return _launch(data_dir, 0, deadline, timeout)


class _PortTaken(Exception):
    """The preferred port was taken before the server could listen on it."""


def _previous_port(data_dir: Path) -> int:
    """The port the last server of ``data_dir`` had, when it is free now; else 0 (any port)."""
    try:
        port = int((data_dir / PORT_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return 0
    if not 1024 <= port <= 65535:
        return 0
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def _launch(data_dir: Path, port: int, deadline: float, timeout: float) -> LocalServer:
    log_path = data_dir / SERVER_LOG
    command = [sys.executable, "-m", "blankly_magics.server", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data_dir)]
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        start = log.seek(0, os.SEEK_END)
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=str(data_dir),
            env=_server_environment(), start_new_session=True, close_fds=True,
        )
    _children[process.pid] = process
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            _children.pop(process.pid, None)
            if port and "cannot listen" in _log_since(log_path, start):
                raise _PortTaken()
            raise EmbeddedServerError(
                f"the local deployment server exited with code {code} while starting; "
                f"the end of {log_path}:\n{_log_tail(data_dir)}"
            )
        info = _read_server_json(data_dir)
        if info and info["pid"] == process.pid and _healthy(info["url"]):
            _reap_when_done(process)
            _remember_port(data_dir, info["url"])
            return LocalServer(info["url"], process.pid, data_dir, started=True)
        time.sleep(0.1)
    _terminate(process.pid, 5.0)
    raise EmbeddedServerError(
        f"the local deployment server did not come up within {timeout:g} s; "
        f"the end of {log_path}:\n{_log_tail(data_dir)}"
    )


def _log_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(65536).decode("utf-8", "replace")
    except OSError:
        return ""


def _reap_when_done(process: subprocess.Popen) -> None:
    """Wait on the server from a thread: when it exits, whoever stopped it, it is reaped at once."""

    def reap() -> None:
        process.wait()
        _children.pop(process.pid, None)

    threading.Thread(target=reap, name=f"blankly-server-reaper-{process.pid}", daemon=True).start()


def _remember_port(data_dir: Path, url: str) -> None:
    from urllib.parse import urlsplit

    try:
        port = urlsplit(url).port
        if port:
            atomic_write(data_dir / PORT_FILE, f"{port}\n")
    except (OSError, ValueError):
        pass  # only a preference: the next server then takes any free port


def ensure_local_server(data_dir: PathArg = None, timeout: float = 30) -> LocalServer:
    """The user's local server: the running one, or a new one started now."""
    directory = _dir(data_dir)
    server = _attach(directory)
    if server is not None:
        return server
    lock = _locked(directory / START_LOCK, timeout, "starting the local server")
    try:
        # Another kernel may have started it while we waited for the lock.
        return _attach(directory) or _start(directory, timeout)
    finally:
        lock.release()


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, wait until it is gone, then SIGKILL the server's whole process group (its runs
    included). Returns as soon as the server is gone: exited, or a zombie its parent will reap."""
    import psutil

    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        process = None
    if process is not None and not _gone(process, timeout):
        try:
            group = os.getpgid(pid)
        except OSError:
            group = None
        try:
            if group == pid:  # started with start_new_session: the group is the server's alone
                os.killpg(pid, signal.SIGKILL)
            else:
                process.kill()
        except (OSError, psutil.NoSuchProcess):
            pass
        if not _gone(process, timeout):
            raise EmbeddedServerError(f"the local deployment server (pid {pid}) did not stop within "
                                      f"{2 * timeout:g} s, even after SIGKILL")
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()  # started here: reap it now (its reaper thread may be doing the same)


def _gone(process: Any, timeout: float) -> bool:
    """True once ``process`` has exited (a zombie counts: it serves nothing), within ``timeout`` s."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_STOP_POLL)


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


def _server_environment() -> dict[str, str]:
    """This process's environment, with the package's own folder first on PYTHONPATH: the
    server's commands must run this same copy of the package, even from a source checkout."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def local_refresh_token(data_dir: PathArg, renew: bool = False, timeout: float = 60) -> str:
    """The refresh token for the local user, cached in ``DIR/local-token`` (0600).

    ``renew=True`` issues a new one: for when the server refused the cached one
    (its data dir was wiped, say). The token is issued by the server's own command,
    ``python -m blankly_magics.server token``, in a process of its own: the server's
    code is the only code that opens its database (its schema, its locks), exactly as
    when an operator issues a token by hand, and the kernel only reads the answer from
    a pipe no other process sees (never an argument or the environment). A lock makes
    two kernels that find no cached token at once issue one token between them."""
    directory = _dir(data_dir)
    path = directory / TOKEN_FILE
    cached = "" if renew else _cached_token(path)
    if cached:
        return cached
    lock = _locked(directory / TOKEN_LOCK, timeout, "issuing the local token")
    try:
        token = "" if renew else _cached_token(path)
        if not token:
            token = _issue_token(directory, timeout)
            atomic_write(path, token)
    except OSError as exc:  # a full disk or a read-only data dir: say where
        raise EmbeddedServerError(f"cannot keep the local token in {path}: {exc.strerror or exc}") from None
    finally:
        lock.release()
    return token


def _cached_token(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def _issue_token(directory: Path, timeout: float) -> str:
    command = [sys.executable, "-m", "blankly_magics.server", "token", "--data-dir", str(directory),
               "--user", LOCAL_USER]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              env=_server_environment(), cwd=str(directory))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServerError(f"cannot issue a token for the local server in {directory}: {exc}") from None
    token = done.stdout.strip()
    if done.returncode != 0 or not token or len(token.split()) != 1:
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EmbeddedServerError(f"cannot issue a token for the local server in {directory}: {said}")
    return token
