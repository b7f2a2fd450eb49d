"""Running uploaded models: a bounded backtest queue and a live-process supervisor.

The runner knows nothing of SQLite or HTTP: the app gives it jobs and it
reports every change through the two callbacks it was given. Every child runs
in its own session (process group), so stopping a run stops everything it
started; a pid file per child lets the next server kill what a crashed one
left behind, checking each process's start time so a reused pid is never hit.

Layout under ``data_dir/runs``::

    backtests/<backtest_id>/output.log    combined stdout+stderr (bounded)
    backtests/<backtest_id>/report/       what the blankly_external hook wrote
    backtests/<backtest_id>/model/        the unpacked version (removed after the run)
    live/<model_id>/...                    the same for the model's live run (fresh per deploy)
    pids/<kind>-<id>.json                  one per running child

Everything the runner creates there is private whatever the server's umask: folders
0700 and files 0600, set when each is created (the unpacked model is tightened the
same way, keeping only the owner's executable bit), and children start with umask
077, so what a model or the hook writes is private too. The children run as the
server's user, so they still read (and run) their own copy.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import envs

# on_backtest(backtest_id, fields): fields is a dict with any of
#   status ("queued"|"running"|"completed"|"failed"|"cancelled"), started_at, ended_at
#   (epoch float), exit_code (int|None), error (str|None: the reason for failed/cancelled),
#   result (dict|None: {"metrics": {...}, "account_values": [{"time": t, "value": v}, ...],
#            "trades": [...], "initial_account_value", "final_account_value",
#            "start_time", "stop_time", "symbols", "quote_asset", "exchange"})
BacktestCallback = Callable[[str, dict[str, Any]], None]
# on_live(model_id, fields): fields is a dict with any of
#   state ("starting"|"running"|"stopped"|"crashed"), version_id, pid, since (epoch float),
#   exit_code, restarts (int), error (str|None), log_tail (str)
LiveCallback = Callable[[str, dict[str, Any]], None]

HOOK_DIR = Path(__file__).resolve().parent / "hook"
LOG_NAME = "output.log"
RUN_TOKEN_VAR = "BLANKLY_MAGICS_RUN_TOKEN"  # marks every process of a run, grandchildren too
_POLL = 0.25  # seconds between checks of a running child's memory and deadline (its exit wakes at once)
_NICE = 10  # children yield the CPU to the server and the notebook
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW|PASSPHRASE|API_?KEY|PRIVATE|CREDENTIAL|AUTH|COOKIE|SESSION|_KEY$|^KEY",
    re.IGNORECASE,
)
_OWN_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")
STOPPED = "stop"  # _watch's reason when the run's stop event was set
CANCELLED = "cancelled by the user"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
CHILD_UMASK = 0o077  # what a model (or the hook in it) writes is its owner's only


# ---------------------------------------------------------------- private files

def private_dir(path: Path) -> Path:
    """``mkdir -p`` where every folder made is 0700, and ``path`` itself 0700 even if it existed.

    Folders above ``path`` that already exist are left as they are (the data dir is
    the store's); chmod after mkdir because mkdir's mode goes through the umask."""
    path = Path(path)
    missing = []
    parent = path
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made by another thread meanwhile: tightened below all the same
            pass
        os.chmod(folder, PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A file descriptor on ``path``, created 0600 (fchmod too: the umask can only take bits away)."""
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private_tree(root: Path) -> None:
    """Folders 0700 and files 0600 under ``root`` (0700 for a file its owner may run), symlinks untouched."""
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, PRIVATE_DIR)
        for name in files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, PRIVATE_FILE | (mode & stat.S_IXUSR))


@dataclass(frozen=True)
class RunLimits:
    """A plan's limits, enforced per run."""

    cpu: int = 1000  # millicores
    ram: int = 2048  # MB: the run is stopped when its memory passes this
    timeout: float = 900.0  # seconds of wall clock for a backtest (ignored for live runs)


@dataclass(frozen=True)
class BacktestJob:
    backtest_id: str
    model_id: str
    version_id: str
    project_id: str
    zip_path: Path
    python_version: str
    backtest_args: dict[str, Any]
    model_type: str = "strategy"
    limits: RunLimits = field(default_factory=RunLimits)
    user_id: str = ""  # given to the model as UID (defaults to project_id: the personal project's id)


@dataclass(frozen=True)
class LiveJob:
    model_id: str
    version_id: str
    project_id: str
    zip_path: Path
    python_version: str
    model_type: str = "strategy"
    schedule: Optional[str] = None  # cron text for screeners
    limits: RunLimits = field(default_factory=RunLimits)
    user_id: str = ""


class RunFailed(Exception):
    """A run could not start or was stopped; the message is the user-facing reason."""


# ---------------------------------------------------------------- logs

class LogSink:
    """A run's combined output file, bounded in size.

    Bytes are appended as they come (so the log can be followed while a run
    goes on). When the file passes ``max_bytes`` it is rewritten as its first
    ``keep_bytes``, a line saying how much was dropped, and its last
    ``keep_bytes``: the start (imports, setup) and the end (the error) survive.
    """

    def __init__(self, path: Path, max_bytes: int = 4 << 20, keep_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep_bytes = min(keep_bytes, max_bytes // 4)
        self.dropped = 0
        self._lock = threading.Lock()
        self._readers: list[threading.Thread] = []
        private_dir(self.path.parent)
        os.close(open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND))

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if not data:
            return
        with self._lock:
            with open(self.path, "ab") as fh:
                fh.write(data)
                size = fh.tell()
            if size > self.max_bytes:
                self._compact(size)

    def note(self, text: str) -> None:
        """A line from the runner itself, marked so it is not mistaken for the model's output."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.write(f"[blankly_magics {stamp}] {text.rstrip()}\n")

    def _compact(self, size: int) -> None:
        keep = self.keep_bytes
        with open(self.path, "rb") as fh:
            head = fh.read(keep)
            fh.seek(size - keep)
            tail = fh.read(keep)
        self.dropped += size - 2 * keep
        marker = (
            f"\n[blankly_magics: {self.dropped} bytes of output dropped here to keep this log "
            f"under {self.max_bytes // (1 << 20) or 1} MB]\n"
        ).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(open_private(tmp), "wb") as fh:
            fh.write(head + marker + tail)
        os.replace(tmp, self.path)

    def attach(self, stream: Any) -> None:
        """Copy a child's output pipe into the log until it closes."""

        def pump() -> None:
            fd = stream.fileno()
            try:
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    self.write(chunk)
            except OSError:
                pass
            finally:
                stream.close()

        thread = threading.Thread(target=pump, name=f"log-{self.path.parent.name}", daemon=True)
        thread.start()
        self._readers.append(thread)

    def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the pipes to close after the process group is gone."""
        for thread in self._readers:
            thread.join(timeout)
        self._readers = [t for t in self._readers if t.is_alive()]

    def tail(self, max_bytes: int = 4000) -> str:
        return read_tail(self.path, max_bytes)


def read_tail(path: Path, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a log, starting on a whole line ('' if there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if size > max_bytes and "\n" in text:
        text = text.split("\n", 1)[1]
    return text


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|[A-Za-z_][\w.]*)(: .*)?$")


def failure_reason(log_tail: str, exit_code: Optional[int]) -> str:
    """The user-facing reason a run failed: the exception's last line when there is one."""
    lines = log_tail.splitlines()
    last_tb = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")),
                  default=None)
    if last_tb is not None:
        for line in reversed(lines[last_tb + 1:]):
            if line and not line[0].isspace() and not line.startswith("[blankly_magics") \
                    and _EXC_LINE.match(line.strip()):
                return line.strip()[:500]
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exited with code {exit_code}"


# ---------------------------------------------------------------- processes

def child_environment(
    *,
    interpreter: envs.Interpreter,
    report_dir: Path,
    run_token: str,
    model_vars: dict[str, str],
) -> dict[str, str]:
    """The server's environment minus anything secret-looking, plus the platform's variables."""
    env = {
        k: v for k, v in os.environ.items()
        if not _SECRET_NAME.search(k) and k not in _OWN_VARS
        and not k.startswith("BLANKLY_MAGICS_") and k not in ("BACKTESTING", "BACKTESTING_ARGS",
                                                              "BACKTESTING_ID")
    }
    path = [str(HOOK_DIR)]
    if interpreter.shared and os.environ.get("PYTHONPATH"):
        # Same interpreter as the server: keep what the server itself could import.
        path.append(os.environ["PYTHONPATH"])
    env.update(model_vars)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(path),
            "PYTHONUNBUFFERED": "1",
            # No __pycache__ in our hook dir or the run's model copy.
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLBACKEND": "Agg",
            # webbrowser (used by Blankly's charts and login) runs `true URL`: no browser opens.
            "BROWSER": "true",
            "BLANKLY_MAGICS_REPORT_DIR": str(report_dir),
            RUN_TOKEN_VAR: run_token,
        }
    )
    if interpreter.env_dir is not None:
        env["VIRTUAL_ENV"] = str(interpreter.env_dir)
        env["PATH"] = str(interpreter.env_dir / "bin") + os.pathsep + env.get("PATH", "")
    return env


def _exited(proc: subprocess.Popen) -> bool:
    """True once the child has exited, WITHOUT reaping it, so its pid (and group) stays ours."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return proc.poll() is not None
    except AttributeError:  # no waitid on this platform
        return proc.poll() is not None
    return info is not None


class RunStop(threading.Event):
    """A run's stop request. Setting it also sets ``wake``, which the run's child
    sets too when it exits: the watcher sleeps on ``wake`` and sees either at once."""

    def __init__(self) -> None:
        super().__init__()
        self.wake = threading.Event()

    def set(self) -> None:
        super().set()
        self.wake.set()


def _wake_on_exit(proc: subprocess.Popen, wake: threading.Event) -> None:
    """Set ``wake`` the moment the child exits: a thread blocked in waitid, which
    (like _exited) does not reap it. Without waitid the watcher's periodic check sees the exit."""
    if not hasattr(os, "waitid"):
        return

    def wait() -> None:
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        except OSError:  # ChildProcessError: Child.finish reaped it first
            pass
        wake.set()

    threading.Thread(target=wait, name=f"exit-{proc.pid}", daemon=True).start()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


@dataclass
class Child:
    """One started process group, with the files that describe it."""

    proc: subprocess.Popen
    log: LogSink
    pid_file: Path
    token: str
    started: float
    code: Optional[int] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace: float) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds, then reap."""
        if self.code is None and not _exited(self.proc):
            _signal_group(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not _exited(self.proc):
                time.sleep(0.05)
        self.finish()

    def finish(self) -> int:
        """Kill whatever is left of the group (before reaping the leader), reap, clean up.

        Idempotent: once the leader is reaped its pid may belong to someone
        else, so the group is never signalled again.
        """
        if self.code is None:
            _signal_group(self.pid, signal.SIGKILL)
            self.code = self.proc.wait()
            self.log.drain()
            self.pid_file.unlink(missing_ok=True)
        return self.code


def spawn(
    *,
    interpreter: envs.Interpreter,
    script: Path,
    cwd: Path,
    env: dict[str, str],
    log: LogSink,
    pid_file: Path,
    record: dict[str, Any],
) -> Child:
    """Start a model script in a new session with its output piped to ``log``."""
    import psutil

    proc = subprocess.Popen(
        [str(interpreter.python), str(script)],
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        umask=CHILD_UMASK,
    )
    log.attach(proc.stdout)
    try:
        psutil.Process(proc.pid).nice(_NICE)
    except psutil.Error:
        pass
    write_pid_record(pid_file, proc.pid, env[RUN_TOKEN_VAR], record)
    return Child(proc=proc, log=log, pid_file=pid_file, token=env[RUN_TOKEN_VAR], started=time.time())


def write_pid_record(pid_file: Path, pid: int, token: str, record: dict[str, Any]) -> None:
    """Record a started process group so a later server can kill it (see reap_leftovers)."""
    import psutil

    try:
        create_time: Optional[float] = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = None
    data = dict(record)
    data.update(pid=pid, pgid=pid, create_time=create_time, token=token, server_pid=os.getpid(),
                server_create_time=psutil.Process().create_time())
    _write_json_atomic(pid_file, data)


def _write_json_atomic(path: Path, data: Any) -> None:
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with os.fdopen(open_private(tmp), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def reap_leftovers(pids_dir: Path) -> list[dict[str, Any]]:
    """Kill children a previous server left running; return their pid records.

    A process is only killed when it is provably ours: the recorded leader with
    the recorded start time, or any process carrying the run's token in its
    environment (its grandchildren). Records of a server that is still alive
    (another server on the same data dir) are left alone.
    """
    import psutil

    records = []
    for path in sorted(Path(pids_dir).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if rec.get("server_pid") != os.getpid() and _alive_as(rec.get("server_pid"), rec.get("server_create_time")):
            continue
        records.append((path, rec))
    if not records:
        return []
    tokens = {rec.get("token") for _, rec in records if rec.get("token")}
    # The whole group at once first: a child being forked right now cannot slip out.
    for _, rec in records:
        if _alive_as(rec.get("pid"), rec.get("create_time")):
            _signal_group(rec["pid"], signal.SIGKILL)
    # Then anything else carrying a run's token (a descendant that left the group).
    for _ in range(3):
        victims = []
        for proc in psutil.process_iter():
            if proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get(RUN_TOKEN_VAR) in tokens and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    victims.append(proc)
            except (psutil.Error, OSError):
                continue
        if not victims:
            break
        psutil.wait_procs(victims, timeout=5)
    for path, _ in records:
        path.unlink(missing_ok=True)
    return [rec for _, rec in records]


def _alive_as(pid: Any, create_time: Any) -> bool:
    """True if ``pid`` is running and started at ``create_time`` (so it is the same process)."""
    import psutil

    if not isinstance(pid, int) or not isinstance(create_time, (int, float)):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 0.01
    except psutil.Error:
        return False


# ---------------------------------------------------------------- preparing a run

@dataclass(frozen=True)
class Prepared:
    """An unpacked model ready to start."""

    run_dir: Path
    model_dir: Path
    script: Path
    cwd: Path
    manifest: dict[str, Any]
    interpreter: envs.Interpreter


def _check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValueError(f"{kind} {value!r} cannot name a run directory")
    return value


def prepare(
    run_dir: Path,
    zip_path: Path,
    python_version: str,
    envs_dir: Path,
    log: LogSink,
    *,
    stop: Optional[threading.Event] = None,
    pid_file: Optional[Path] = None,
) -> Prepared:
    """Unpack the version into ``run_dir/model`` and choose its interpreter (maybe building a venv).

    A venv build (venv + pip) is stopped by ``stop`` and recorded in ``pid_file``
    while it runs, like a model's own process.
    """
    from .zipcheck import ZipRejected, inspect_model_zip, safe_extract

    model_dir = run_dir / "model"
    try:
        info = inspect_model_zip(zip_path)
        # Made 0700 first, so nobody else can look in while the zip is unpacked;
        # safe_extract creates with the umask (and keeps group/other bits of a zip's
        # executable entries), so the copy is tightened once it is all there.
        private_dir(model_dir)
        safe_extract(zip_path, model_dir)
        make_private_tree(model_dir)
    except ZipRejected as exc:
        raise RunFailed(f"the model zip cannot be run: {exc.message}") from None
    except FileNotFoundError:
        raise RunFailed("the version's zip is missing from the server's data dir") from None
    script = model_dir / info.main_script
    cwd = model_dir / info.working_directory
    if not cwd.is_dir():
        raise RunFailed(f"blankly.json working_directory {info.working_directory!r} is not a folder in the zip")
    try:
        token = uuid.uuid4().hex

        def track(proc: subprocess.Popen) -> Callable[[], None]:
            if pid_file is None:
                return lambda: None
            write_pid_record(pid_file, proc.pid, token, {"kind": "env"})
            return lambda: pid_file.unlink(missing_ok=True)

        private_dir(envs_dir)  # venvs are built in 0700 temp folders inside it
        interpreter = envs.select_python(
            python_version, model_dir / info.requirements, envs_dir, log=log.write,
            stop=stop, track=track, env_extra={RUN_TOKEN_VAR: token},
        )
    except envs.EnvError as exc:
        raise RunFailed(str(exc)) from None
    if not interpreter.shared:
        log.note(f"using the cached environment {interpreter.env_dir.name[:12]} (python {interpreter.version})")
    return Prepared(run_dir, model_dir, script, cwd, info.manifest, interpreter)


def platform_vars(
    *, project_id: str, model_id: str, version_id: str, user_id: str, model_type: str
) -> dict[str, str]:
    return {
        "PROJECT_ID": project_id,
        "MODEL_ID": model_id,
        "VERSION_ID": version_id,
        "UID": user_id or project_id,
        "TYPE": "SCREENER" if model_type == "screener" else "STRATEGY",
    }


def read_backtest_result(report_dir: Path) -> Optional[dict[str, Any]]:
    path = report_dir / "backtest_result.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------- live supervision

@dataclass
class _Live:
    job: LiveJob
    thread: Optional[threading.Thread] = None
    stop: RunStop = field(default_factory=RunStop)
    replaced: bool = False
    child: Optional[Child] = None
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Backtest:
    job: BacktestJob
    cancelled: RunStop = field(default_factory=RunStop)
    child: Optional[Child] = None
    stop_reason: Optional[str] = None
    started: bool = False  # a worker took it from the queue
    done: bool = False


class Runner:
    """Owns every child process the server starts."""

    def __init__(
        self,
        data_dir: Path,
        on_backtest: BacktestCallback,
        on_live: LiveCallback,
        max_workers: Optional[int] = None,
        *,
        max_restarts: int = 5,
        restart_backoff: float = 1.0,
        grace: float = 5.0,
        log_max_bytes: int = 4 << 20,
        stable_after: float = 300.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.on_backtest = on_backtest
        self.on_live = on_live
        self.max_workers = max(1, max_workers or os.cpu_count() or 1)
        self.max_restarts = max_restarts
        self.restart_backoff = restart_backoff
        self.grace = grace
        self.log_max_bytes = log_max_bytes
        self.stable_after = stable_after  # a live run this long resets the restart count
        self._runs = self.data_dir / "runs"
        self._pids = self._runs / "pids"
        self._envs = self.data_dir / "envs"
        self._lock = threading.Lock()
        # Serialises live reports so a replaced run can never report after its successor.
        self._report_lock = threading.RLock()
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._backtests: dict[str, _Backtest] = {}
        self._live: dict[str, _Live] = {}
        self._workers: list[threading.Thread] = []
        self._closing = threading.Event()
        self._versions: Optional[list[str]] = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start worker threads; kill processes a previous server left behind.

        Leftovers are reported through the callbacks before this returns: a
        backtest as ``failed``, a live model as ``stopped``, each with the reason.
        """
        if self._workers:
            return
        self._closing.clear()
        for folder in (self._runs, self._runs / "backtests", self._runs / "live", self._pids):
            private_dir(folder)  # also tightens folders an older server made with the umask
        for leftover in reap_leftovers(self._pids):
            kind, ident = leftover.get("kind"), leftover.get("id")
            if kind == "backtest" and ident:
                self._report_backtest(ident, {
                    "status": "failed", "ended_at": time.time(), "exit_code": None,
                    "error": "stopped: the server stopped while this backtest ran",
                })
            elif kind == "live" and ident:
                self._call_on_live(ident, {
                    "state": "stopped", "pid": None, "since": time.time(),
                    "error": "the server restarted; the model's previous process was stopped",
                })
        for i in range(self.max_workers):
            worker = threading.Thread(target=self._work, name=f"backtest-worker-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def shutdown(self, stop_live: bool = True) -> None:
        """Stop workers; terminate every child (live ones too when stop_live)."""
        self._closing.set()
        with self._lock:
            backtests = list(self._backtests.values())
            lives = list(self._live.values())
        for run in backtests:
            if not run.done:
                run.stop_reason = ("stopped: the server stopped while this backtest ran" if run.started
                                   else "the server stopped before this backtest ran")
                run.cancelled.set()
        for _ in self._workers:
            self._queue.put(None)
        if stop_live:
            for live in lives:
                live.stop.set()
            for live in lives:
                if live.thread is not None:
                    live.thread.join(self.grace + 10)
        for worker in self._workers:
            worker.join(self.grace + 10)
        self._workers = []
        # Backtests still queued never started: say so rather than leave them queued forever.
        with self._lock:
            leftovers = [r for r in self._backtests.values() if not r.done]
        for run in leftovers:
            run.done = True
            self._report_backtest(run.job.backtest_id, {
                "status": "failed", "ended_at": time.time(),
                "error": "the server stopped before this backtest ran",
            })

    def python_versions(self) -> list[str]:
        """The X.Y versions this machine can run models with."""
        if self._versions is None:
            # Blankly itself needs 3.7 or newer.
            self._versions = [v for v in envs.python_versions() if tuple(map(int, v.split("."))) >= (3, 7)]
        return list(self._versions)

    # -- callbacks -------------------------------------------------------------

    def _report_backtest(self, backtest_id: str, fields: dict[str, Any]) -> None:
        try:
            self.on_backtest(backtest_id, fields)
        except Exception:  # the app's bug must not kill a worker or leave a child behind
            traceback.print_exc()

    def _call_on_live(self, model_id: str, fields: dict[str, Any]) -> None:
        try:
            self.on_live(model_id, fields)
        except Exception:
            traceback.print_exc()

    def _report_live(self, live: _Live, fields: dict[str, Any]) -> None:
        """Report for one run of a model; a run that was replaced by a new deploy stays silent."""
        with self._report_lock:
            if live.replaced:
                return
            with self._lock:
                live.status.update(fields)
            self._call_on_live(live.job.model_id, fields)

    # -- backtests ---------------------------------------------------------------

    def submit_backtest(self, job: BacktestJob) -> None:
        """Queue a backtest; returns at once, reports 'queued' then progress."""
        _check_id("backtest id", job.backtest_id)
        if self._closing.is_set():
            raise RuntimeError("the runner is shutting down")
        with self._lock:
            if job.backtest_id in self._backtests:
                raise ValueError(f"backtest {job.backtest_id!r} was already submitted")
            self._backtests[job.backtest_id] = _Backtest(job)
        self._report_backtest(job.backtest_id, {"status": "queued"})
        self._queue.put(job.backtest_id)

    def queued(self) -> int:
        """Backtests waiting for a worker (for the app's queue bound)."""
        return self._queue.qsize()

    def cancel_backtest(self, backtest_id: str) -> bool:
        with self._lock:
            run = self._backtests.get(backtest_id)
        if run is None or run.done:
            return False
        # A queued run is skipped by its worker; a running one is stopped by its watcher.
        run.stop_reason = CANCELLED
        run.cancelled.set()
        return True

    def backtest_log(self, backtest_id: str) -> Path:
        """Path of the backtest's combined stdout/stderr log (may not exist yet)."""
        return self._runs / "backtests" / _check_id("backtest id", backtest_id) / LOG_NAME

    def _work(self) -> None:
        while True:
            backtest_id = self._queue.get()
            if backtest_id is None:
                return
            with self._lock:
                run = self._backtests.get(backtest_id)
            if run is None:
                continue
            try:
                self._run_backtest(run)
            except Exception:  # never lose a worker; the backtest is failed with the reason
                traceback.print_exc()
                self._finish_backtest(run, {"status": "failed", "error": "internal error in the runner: "
                                            + traceback.format_exc().strip().splitlines()[-1]})
            finally:
                with self._lock:
                    self._backtests.pop(backtest_id, None)

    def _finish_backtest(self, run: _Backtest, fields: dict[str, Any]) -> None:
        if run.done:
            return
        run.done = True
        fields.setdefault("ended_at", time.time())
        self._report_backtest(run.job.backtest_id, fields)

    def _run_backtest(self, run: _Backtest) -> None:
        job = run.job
        run.started = True
        if run.cancelled.is_set():
            self._finish_backtest(run, {"status": _stop_status(run), "error": run.stop_reason})
            return
        run_dir = self._runs / "backtests" / job.backtest_id
        shutil.rmtree(run_dir, ignore_errors=True)
        log = LogSink(run_dir / LOG_NAME, self.log_max_bytes)
        self._report_backtest(job.backtest_id, {"status": "running", "started_at": time.time()})
        report_dir = private_dir(run_dir / "report")
        try:
            prep = prepare(run_dir, job.zip_path, job.python_version, self._envs, log,
                           stop=run.cancelled, pid_file=self._pids / f"env-{job.backtest_id}.json")
            if run.cancelled.is_set():
                raise RunFailed(run.stop_reason or "cancelled")
            env = child_environment(
                interpreter=prep.interpreter,
                report_dir=report_dir,
                run_token=uuid.uuid4().hex,
                model_vars={
                    **platform_vars(project_id=job.project_id, model_id=job.model_id,
                                    version_id=job.version_id, user_id=job.user_id,
                                    model_type=job.model_type),
                    "BACKTESTING": "1",
                    "BACKTESTING_ID": job.backtest_id,
                    "BACKTESTING_ARGS": base64.b64encode(
                        json.dumps(job.backtest_args or {}).encode()).decode(),
                },
            )
            log.note(f"backtest {job.backtest_id}: python {prep.interpreter.version}, "
                     f"limits {job.limits.timeout:g} s, {job.limits.ram} MB")
            with self._lock:
                if run.cancelled.is_set():
                    raise RunFailed(run.stop_reason or "cancelled")
                run.child = spawn(
                    interpreter=prep.interpreter, script=prep.script, cwd=prep.cwd, env=env, log=log,
                    pid_file=self._pids / f"backtest-{job.backtest_id}.json",
                    record={"kind": "backtest", "id": job.backtest_id},
                )
            code, reason = self._watch(run.child, job.limits, run.cancelled, deadline=True)
        except RunFailed as exc:
            reason = run.stop_reason if run.cancelled.is_set() else str(exc)
            log.note(reason)
            status = _stop_status(run) if run.cancelled.is_set() else "failed"
            self._finish_backtest(run, {"status": status, "error": reason, "exit_code": None})
            return
        finally:
            shutil.rmtree(run_dir / "model", ignore_errors=True)
        result = read_backtest_result(report_dir)
        if reason == STOPPED or (reason is None and run.cancelled.is_set()):
            reason = run.stop_reason or CANCELLED
            log.note(reason)
            self._finish_backtest(run, {"status": _stop_status(run), "exit_code": code, "error": reason})
        elif reason is not None:
            log.note(reason)
            self._finish_backtest(run, {"status": "failed", "exit_code": code, "error": reason})
        elif code != 0:
            error = failure_reason(log.tail(16000), code)
            self._finish_backtest(run, {"status": "failed", "exit_code": code, "error": error})
        elif result is None:
            self._finish_backtest(run, {
                "status": "failed", "exit_code": code,
                "error": "produced no backtest result (the script never ran a Blankly backtest: "
                         "does it create a blankly.Strategy and call start() or backtest()?)",
            })
        else:
            result.pop("blankly_backtest_id", None)
            self._finish_backtest(run, {"status": "completed", "exit_code": code, "error": None,
                                        "result": result})

    def _watch(
        self, child: Child, limits: RunLimits, stop: RunStop, *, deadline: bool
    ) -> tuple[int, Optional[str]]:
        """Wait for a child, enforcing the limits; return (exit code, reason it was stopped or None).

        Its exit and a stop request end the wait at once (both set ``stop.wake``);
        memory and time are checked every _POLL seconds meanwhile."""
        ram_bytes = limits.ram * (1 << 20) if limits.ram else None
        ends = time.monotonic() + limits.timeout if deadline and limits.timeout else None
        reason: Optional[str] = None
        stop.wake.clear()  # a wake left by an earlier child of this run; every check below runs anyway
        _wake_on_exit(child.proc, stop.wake)
        while not _exited(child.proc):
            if stop.is_set():
                child.stop(self.grace)
                return child.finish(), STOPPED
            if ends is not None and time.monotonic() > ends:
                reason = f"stopped: exceeded the plan's time limit of {limits.timeout:g} s"
                child.stop(min(self.grace, 2.0))
                break
            if ram_bytes is not None and tree_rss(child.pid) > ram_bytes:
                reason = f"stopped: exceeded the plan's memory limit of {limits.ram} MB"
                _signal_group(child.pid, signal.SIGKILL)
                break
            stop.wake.wait(_POLL)
            stop.wake.clear()  # cleared before the checks above run again, so no wake is lost
        code = child.finish()
        if reason is None and code != 0 and ram_bytes is not None and "MemoryError" in child.log.tail(2000):
            reason = f"stopped: exceeded the plan's memory limit of {limits.ram} MB (MemoryError)"
        return code, reason

    # -- live models -------------------------------------------------------------

    def deploy(self, job: LiveJob) -> None:
        """Start a live model, replacing (stop then start) any running one of the model."""
        _check_id("model id", job.model_id)
        if self._closing.is_set():
            raise RuntimeError("the runner is shutting down")
        live = _Live(job)
        with self._report_lock:
            with self._lock:
                old = self._live.get(job.model_id)
                if old is not None:
                    old.replaced = True
                    old.stop.set()
                self._live[job.model_id] = live
            self._report_live(live, {"state": "starting", "version_id": job.version_id, "pid": None,
                                     "since": time.time(), "exit_code": None, "restarts": 0,
                                     "error": None})
        live.thread = threading.Thread(
            target=self._supervise, args=(live, old), name=f"live-{job.model_id}", daemon=True
        )
        live.thread.start()

    def kill(self, model_id: str) -> bool:
        """Stop a live model (terminate, kill after a grace period). False if none ran."""
        with self._lock:
            live = self._live.get(model_id)
        if live is None or live.thread is None or not live.thread.is_alive():
            return False
        live.stop.set()
        live.thread.join(self.grace + 10)
        return True

    def live_log(self, model_id: str) -> Path:
        """Path of the live model's current log."""
        return self._runs / "live" / _check_id("model id", model_id) / LOG_NAME

    def live_status(self, model_id: str) -> Optional[dict[str, Any]]:
        with self._lock:
            live = self._live.get(model_id)
            if live is None:
                return None
            status = dict(live.status)
        status["log_tail"] = self._log_tail(model_id)
        return status

    def _log_tail(self, model_id: str, max_bytes: int = 4000) -> str:
        return read_tail(self.live_log(model_id), max_bytes)

    def _supervise(self, live: _Live, old: Optional[_Live]) -> None:
        job = live.job
        if old is not None and old.thread is not None:
            old.thread.join()  # the previous run of this model is gone before this one starts
        if live.stop.is_set():
            self._end_live(live, {"state": "stopped", "pid": None, "error": None})
            return
        run_dir = self._runs / "live" / job.model_id
        shutil.rmtree(run_dir, ignore_errors=True)
        log = LogSink(run_dir / LOG_NAME, self.log_max_bytes)
        private_dir(run_dir / "report")
        try:
            prep = prepare(run_dir, job.zip_path, job.python_version, self._envs, log,
                           stop=live.stop, pid_file=self._pids / f"env-live-{job.model_id}.json")
            env = child_environment(
                interpreter=prep.interpreter,
                report_dir=run_dir / "report",
                run_token=uuid.uuid4().hex,
                model_vars=platform_vars(project_id=job.project_id, model_id=job.model_id,
                                         version_id=job.version_id, user_id=job.user_id,
                                         model_type=job.model_type),
            )
            if job.model_type == "screener":
                self._supervise_screener(live, prep, env, log)
            else:
                self._supervise_strategy(live, prep, env, log)
        except RunFailed as exc:
            if live.stop.is_set():  # killed while its environment was being built
                log.note("stopped")
                self._end_live(live, {"state": "stopped", "pid": None, "error": None})
                return
            log.note(str(exc))
            self._end_live(live, {"state": "crashed", "pid": None, "error": str(exc),
                                  "log_tail": log.tail()})
        except Exception:
            traceback.print_exc()
            message = "internal error in the runner: " + traceback.format_exc().strip().splitlines()[-1]
            log.note(message)
            self._end_live(live, {"state": "crashed", "pid": None, "error": message,
                                  "log_tail": log.tail()})

    def _end_live(self, live: _Live, fields: dict[str, Any]) -> None:
        fields.setdefault("since", time.time())
        self._report_live(live, fields)

    def _start_child(self, live: _Live, prep: Prepared, env: dict[str, str], log: LogSink) -> Child:
        with self._lock:
            if live.stop.is_set():
                raise _Stopped()
            live.child = spawn(
                interpreter=prep.interpreter, script=prep.script, cwd=prep.cwd, env=env, log=log,
                pid_file=self._pids / f"live-{live.job.model_id}.json",
                record={"kind": "live", "id": live.job.model_id},
            )
            return live.child

    def _supervise_strategy(self, live: _Live, prep: Prepared, env: dict[str, str], log: LogSink) -> None:
        restarts = 0
        while True:
            try:
                child = self._start_child(live, prep, env, log)
            except _Stopped:
                self._end_live(live, {"state": "stopped", "pid": None, "error": None})
                return
            self._report_live(live, {
                "state": "running", "pid": child.pid, "since": child.started, "restarts": restarts,
                "exit_code": None, "version_id": live.job.version_id,
            })
            code, reason = self._watch(child, live.job.limits, live.stop, deadline=False)
            ran_for = time.time() - child.started
            if reason == STOPPED:
                log.note("stopped")
                self._end_live(live, {"state": "stopped", "pid": None, "exit_code": code, "error": None})
                return
            if reason is None and code == 0:
                log.note("the script ended by itself (exit code 0)")
                self._end_live(live, {"state": "stopped", "pid": None, "exit_code": 0,
                                      "error": "the script ended by itself (exit code 0)"})
                return
            error = reason or failure_reason(log.tail(16000), code)
            if ran_for >= self.stable_after:
                restarts = 0
            if restarts >= self.max_restarts:
                log.note(f"crashed: {error}; gave up after {restarts} restarts")
                self._end_live(live, {"state": "crashed", "pid": None, "exit_code": code,
                                      "error": f"{error} (gave up after {restarts} restarts)",
                                      "restarts": restarts, "log_tail": log.tail()})
                return
            delay = min(self.restart_backoff * (2 ** restarts), 60.0)
            restarts += 1
            log.note(f"crashed: {error}; restart {restarts} of {self.max_restarts} in {delay:g} s")
            self._report_live(live, {
                "state": "starting", "pid": None, "exit_code": code, "restarts": restarts,
                "error": error, "log_tail": log.tail(), "since": time.time(),
            })
            if live.stop.wait(delay):
                self._end_live(live, {"state": "stopped", "pid": None, "error": None})
                return

    def _supervise_screener(self, live: _Live, prep: Prepared, env: dict[str, str], log: LogSink) -> None:
        from . import cron

        text = live.job.schedule or (prep.manifest.get("screener") or {}).get("schedule")
        try:
            schedule = cron.parse(text or "")
        except cron.CronError as exc:
            raise RunFailed(f"the screener's schedule cannot be used: {exc}") from None
        self._report_live(live, {"state": "running", "pid": None, "since": time.time(),
                                              "version_id": live.job.version_id, "error": None})
        log.note(f"screener scheduled with {schedule.text!r} (local time)")
        while True:
            now = dt.datetime.now()
            when = schedule.next_after(now)
            if when is None:
                self._end_live(live, {"state": "stopped", "pid": None,
                                      "error": f"schedule {schedule.text!r} never runs again"})
                return
            if live.stop.wait(max(0.0, (when - dt.datetime.now()).total_seconds())):
                self._end_live(live, {"state": "stopped", "pid": None, "error": None})
                return
            log.note(f"screener run at {when:%Y-%m-%d %H:%M}")
            try:
                child = self._start_child(live, prep, env, log)
            except _Stopped:
                self._end_live(live, {"state": "stopped", "pid": None, "error": None})
                return
            self._report_live(live, {"pid": child.pid})
            code, reason = self._watch(child, live.job.limits, live.stop, deadline=True)
            if reason == STOPPED:
                self._end_live(live, {"state": "stopped", "pid": None, "exit_code": code, "error": None})
                return
            error = reason or (None if code == 0 else failure_reason(log.tail(16000), code))
            if error:
                log.note(f"screener run failed: {error}")
            self._report_live(live, {"pid": None, "exit_code": code, "error": error,
                                                  "log_tail": log.tail()})


def _stop_status(run: _Backtest) -> str:
    return "cancelled" if run.stop_reason == CANCELLED else "failed"


class _Stopped(Exception):
    """A live model was stopped before its process could start."""
