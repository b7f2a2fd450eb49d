"""Warm starts: a backtest starts in a sandbox that has already imported numpy, pandas and Blankly.

A warm worker is the sandbox a cold run would get (the same mounts, environment, user id,
priority and umask: sandbox.py, launch.py), started before its run is known, on a folder of
its own (``runs/warm/<slot>``) whose four writable folders are still empty, running
``worker/worker.py``. It imports the heavy modules, plus the top-level imports of the recent
models of its environment, and waits on its control socket. When a backtest is prepared
(local.py), the executor takes an idle worker of the interpreter the backtest needs, moves
the worker's four folders into the backtest's folder (a rename on the same disk: the
sandbox's mounts follow the folders), unpacks the version there, and starts the run by
sending the worker its environment, command, kernel limits and output pipe. The worker
becomes that run's one process and exits with it; the pool starts another in the
background, once no backtest is running (or after REFILL_WAIT seconds), so that its imports
do not slow the runs. So no state passes from one run to the next, and every run has a
sandbox of its own, as a cold run has; the server watches, limits and stops it as a cold
run's process.

Only backtests start warm, and only with an environment that is ready (the server's own, or a
cached venv) and a plan with room for the imports (``MIN_RAM_MB``): one that needs building, a
small plan, and live models start cold. The pool fills once the
server runs its first backtest, and follows what is asked for: it keeps one worker per
backtest among the last ``size`` ones, of that backtest's interpreter. An environment whose
worker cannot import the heavy modules starts cold from then on.
"""
from __future__ import annotations

import array
import ast
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import uuid
import zipfile
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from . import envs
from .folders import WRITABLE, RunFolder
from .logs import LogSink
from .process import RUN_TOKEN_VAR, Child, spawn, write_pid_record
from .sandbox import SANDBOX_VIEW, WORKER, WORKER_DIR, SandboxSpec, View

if TYPE_CHECKING:
    from .local import LocalExecutor

log = logging.getLogger("blankly_magics.server")

BASE_MODULES = ("numpy", "pandas", "blankly")  # as worker.py imports them
MAX_EXTRA_MODULES = 16  # a model's other top-level imports kept per environment
MAX_SCRIPT_BYTES = 256 << 10  # a main script larger than this is not read for its imports
MAX_MESSAGE = 1 << 20
READY_TIMEOUT = 120.0  # seconds a run waits for its worker's imports before it starts cold
REFILL_WAIT = 3.0  # seconds a new worker waits for the backtests running to end (its imports would slow them)
IDLE_MB = 125  # an idle worker's resident memory, measured (docs/server/runs.md): sizes the pool
MIN_RAM_MB = 4 * IDLE_MB  # a run whose plan allows less starts cold: the imports would take much of it


def default_size(cores: Optional[int] = None, ram_mb: Optional[int] = None) -> int:
    """Idle workers by default: one per core, in at most a twentieth of the memory."""
    if cores is None or ram_mb is None:
        from ..config import _machine

        cores, ram_mb = _machine()
    return max(0, min(cores, ram_mb // 20 // IDLE_MB))


@dataclass(frozen=True)
class WarmKey:
    """Which runs a worker can serve: those with this interpreter and this network setting."""

    interpreter: envs.Interpreter
    network: bool


def ready_interpreter(python_version: str, requirements: str, envs_dir: Path) -> Optional[envs.Interpreter]:
    """The interpreter a run will get when it needs no build (envs.select_python's choice), else None."""
    try:
        version = envs.normalize_version(python_version)
    except envs.EnvError:
        return None
    if version == envs.SERVER_VERSION and envs.satisfied_here(requirements):
        return envs.Interpreter(Path(sys.executable), version, None)
    env_dir = Path(envs_dir) / envs.env_key(version, requirements)
    base = envs.find_pythons().get(version)
    if base is None or not (env_dir / ".ready").exists():
        return None
    return envs.Interpreter(env_dir / "bin" / "python", version, env_dir, base)


def zip_facts(zip_path: Path) -> tuple[str, list[str]]:
    """(the requirements text, the main script's other top-level imports) of a version's zip."""
    from ..zipcheck import inspect_model_zip

    info = inspect_model_zip(zip_path)
    with zipfile.ZipFile(zip_path) as zf:
        try:
            requirements = zf.read(f"model/{info.requirements}").decode("utf-8", "replace")
        except KeyError:
            requirements = ""
        script = zf.getinfo(f"model/{info.main_script}")
        source = zf.read(script) if script.file_size <= MAX_SCRIPT_BYTES else b""
    local = {Path(name).parts[0].split(".")[0] for name in info.files}
    local |= {Path(name).parts[-1].split(".")[0] for name in info.files}
    return requirements, [name for name in top_level_imports(source) if name not in local]


def top_level_imports(source: bytes) -> list[str]:
    """The modules a script imports at its top level, in order, without the standard library's."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module]
        else:
            continue
        for name in found:
            top = name.split(".")[0]
            if top not in names and top not in BASE_MODULES and top not in sys.stdlib_module_names:
                names.append(top)
    return names


# ---------------------------------------------------------------- one sandbox with a worker in it

def send_job(ctl: socket.socket, job: dict[str, Any], fd: int) -> None:
    """Send one job with ``fd`` (the run's output pipe) attached."""
    data = json.dumps(job).encode("utf-8")
    if len(data) > MAX_MESSAGE:
        raise OSError(f"the run's environment is too large to hand to a worker ({len(data)} bytes)")
    ctl.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def receive(ctl: socket.socket, timeout: Optional[float]) -> Optional[dict[str, Any]]:
    """The worker's next message; None when it closed its end, died or said nothing in time."""
    ctl.settimeout(timeout)
    try:
        data = ctl.recv(MAX_MESSAGE)
    except OSError:  # socket.timeout included
        return None
    return json.loads(data) if data else None


@dataclass
class Sandbox:
    """A started sandbox running worker.py: its process, the server's end of its control socket."""

    child: Child
    ctl: socket.socket
    token: str
    ready: Optional[dict[str, Any]] = None  # the worker's first message, once read

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Optional[str]:
        """None once its imports are done; else why it cannot take a run."""
        if self.ready is None:
            self.ready = receive(self.ctl, timeout) or {"broken": "the worker stopped before it was ready"}
            self.ctl.settimeout(None)
        return self.ready.get("broken")

    def close(self) -> None:
        """Kill whatever is left of it and reap it."""
        self.ctl.close()
        self.child.finish()


def start_sandbox(executor: "LocalExecutor", key: WarmKey, folder: RunFolder, *, uid: Optional[int],
                  modules: Iterable[str], log: LogSink, pid_file: Path, record: dict[str, Any]) -> Sandbox:
    """Start worker.py in a sandbox as a run's would be started, on ``folder``'s writable folders.

    Only the largest core dump is limited here: the run's own kernel limits come with its job."""
    server_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE + 4096)
    confined = bool(executor.bwrap)
    view = SANDBOX_VIEW if confined else View(str(folder.model), str(folder.report), str(folder.home),
                                              str(folder.tmp), "", str(key.interpreter.env_dir or ""))
    program = WORKER if confined else str(WORKER_DIR / "worker.py")
    argv = (executor.python_inside(key.interpreter), program, str(worker_end.fileno()), ",".join(modules))
    spec = SandboxSpec(folders={name: getattr(folder, name) for name in WRITABLE}, argv=argv, cwd=view.model,
                       prefixes=executor.prefixes(key.interpreter), env_dir=key.interpreter.env_dir,
                       network=key.network, account_files=executor.accounts, worker=True)
    env = executor.environment(key.interpreter, view, {"BACKTESTING": "1"})
    try:
        child = spawn(executor.launch(spec, uid, {}), env=env, cwd=None if confined else folder.model, log=log,
                      pid_file=pid_file, record=record, sandboxed=confined, pass_fds=(worker_end.fileno(),))
    except BaseException:
        server_end.close()
        raise
    finally:
        worker_end.close()
    return Sandbox(child, server_end, env[RUN_TOKEN_VAR])


# ---------------------------------------------------------------- a pool worker

class Worker:
    """A pre-started sandbox for one backtest: idle in the pool, then handed to a run."""

    def __init__(self, key: WarmKey, folder: RunFolder, uid: Optional[int], sandbox: Sandbox,
                 give_back: Callable[[Optional[int]], None]) -> None:
        self.key = key
        self.folder = folder  # runs/warm/<slot>: its writable folders until handed over
        self.log = sandbox.child.log.path  # runs/warm/<slot>.log: what the sandbox printed outside the worker
        self.uid = uid  # None once handed over (the run owns it then)
        self.sandbox = sandbox
        self._give_back = give_back

    def alive(self) -> bool:
        return not self.sandbox.child.exited()

    def hand_over(self, folder: RunFolder) -> Optional[int]:
        """Move the worker's writable folders into the run's ``folder``; the user id the run now owns."""
        folder.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in WRITABLE:
            shutil.rmtree(folder.root / name, ignore_errors=True)
            os.rename(self.folder.root / name, folder.root / name)
        os.rmdir(self.folder.root)
        uid, self.uid = self.uid, None
        return uid

    def start(self, job: dict[str, Any], log: LogSink, pid_file: Path, record: dict[str, Any]) -> Optional[Child]:
        """Hand the worker its run (see the module's docstring); None when it cannot take it."""
        sandbox = self.sandbox
        if sandbox.wait_ready() is not None:
            return None
        job = dict(job, env={**job["env"], RUN_TOKEN_VAR: sandbox.token})  # one token for the whole tree
        read_end, write_end = os.pipe()
        try:
            send_job(sandbox.ctl, job, write_end)
        except OSError:
            os.close(read_end)
            return None
        finally:
            os.close(write_end)
        sandbox.ctl.close()
        write_pid_record(pid_file, sandbox.child.pid, sandbox.token, record)
        sandbox.child.pid_file.unlink(missing_ok=True)
        log.attach(os.fdopen(read_end, "rb", buffering=0))
        return Child(proc=sandbox.child.proc, log=log, pid_file=pid_file, token=sandbox.token, started=time.time(),
                     sandboxed=sandbox.child.sandboxed)

    def discard(self) -> None:
        """Kill it; its folder (what is left of it) and log go, its user id is given back."""
        self.sandbox.close()
        shutil.rmtree(self.folder.root, ignore_errors=True)
        self.log.unlink(missing_ok=True)
        self._give_back(self.uid)
        self.uid = None


class WarmPool:
    """Idle workers, kept as the last ``size`` backtests' interpreters ask (see the module)."""

    def __init__(self, executor: "LocalExecutor", size: int) -> None:
        self.executor = executor
        self.size = size
        self._recent: deque[WarmKey] = deque(maxlen=max(1, size))
        self._idle: list[Worker] = []
        self._extras: dict[WarmKey, list[str]] = {}  # the recent models' other imports, per environment
        self._skipped: dict[WarmKey, set[str]] = {}  # imports its workers could not make
        self._cold: set[WarmKey] = set()  # environments whose workers cannot import the heavy modules
        self._cv = threading.Condition()
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self._running = 0  # backtests between begin() and done()
        self._since = 0.0  # when the pool last had no backtest running
        self._holding = 0  # sweeps running: no worker starts until they end

    def begin(self, *, sweep: bool = False) -> None:
        """A backtest is being prepared: new workers wait for it (REFILL_WAIT, a sweep's whole run,
        whose points use every core); done() ends it."""
        with self._cv:
            if not self._running:
                self._since = time.monotonic()
            self._running += 1
            self._holding += sweep

    def done(self, *, sweep: bool = False) -> None:
        with self._cv:
            self._running -= 1
            self._holding -= sweep
            self._cv.notify_all()

    def take(self, key: WarmKey, modules: Iterable[str] = ()) -> Optional[Worker]:
        """An idle worker for ``key`` (still importing, maybe), or None; the pool refills."""
        if self.size <= 0:
            return None
        with self._cv:
            if self._closed or key in self._cold:
                return None
            self._learn(key, modules)
            if self._thread is None:  # the pool fills from the first backtest on
                self._recent.extend([key] * self.size)
                # Workers die with the thread that started them (PR_SET_PDEATHSIG): one thread
                # starts them all and lives as long as the pool.
                self._thread = threading.Thread(target=self._fill, name="warm-pool", daemon=True)
                self._thread.start()
            self._recent.append(key)
            worker = next((w for w in self._idle if w.key == key and w.alive()), None)
            if worker is not None:
                self._idle.remove(worker)
            self._cv.notify_all()
        return worker

    def cannot_warm(self, key: WarmKey, reason: str) -> None:
        """``key``'s worker could not import the heavy modules: its runs start cold from now on."""
        log.warning("warm starts are off for python %s%s: %s", key.interpreter.version,
                    f" ({key.interpreter.env_dir.name[:12]})" if key.interpreter.env_dir else "", reason)
        with self._cv:
            self._cold.add(key)
            self._recent = deque((k for k in self._recent if k != key), maxlen=self._recent.maxlen)
            self._cv.notify_all()

    def note_ready(self, worker: Worker) -> None:
        """A worker's ready message lists the imports its environment does not have: not asked again."""
        skipped = (worker.sandbox.ready or {}).get("skipped") or []
        if skipped:
            with self._cv:
                self._skipped.setdefault(worker.key, set()).update(skipped)
                self._extras[worker.key] = [m for m in self._extras.get(worker.key, []) if m not in skipped]

    def idle(self) -> list[Worker]:
        with self._cv:
            return list(self._idle)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(60)

    # -- the filling thread ---------------------------------------------------------

    def _learn(self, key: WarmKey, modules: Iterable[str]) -> None:
        skipped = self._skipped.get(key, set())
        known = [m for m in modules if m not in skipped]
        known += [m for m in self._extras.get(key, []) if m not in known]
        self._extras[key] = known[:MAX_EXTRA_MODULES]

    def _next(self) -> Optional[tuple[str, Any]]:
        """What to do now: ("start", key), ("retire", worker), ("wait", seconds) or nothing."""
        self._idle = [w for w in self._idle if w.alive() or self._drop(w)]
        waited = time.monotonic() - self._since
        if self._holding or (self._running and waited < REFILL_WAIT):
            return "wait", max(0.5, REFILL_WAIT - waited)
        wanted, have = Counter(self._recent), Counter(w.key for w in self._idle)
        under = [k for k in dict.fromkeys(reversed(self._recent)) if have[k] < wanted[k]]
        if not under:
            return None
        if len(self._idle) < self.size:
            return "start", under[0]
        over = [w for w in self._idle if have[w.key] > wanted[w.key]]
        return ("retire", over[0]) if over else None

    def _drop(self, worker: Worker) -> bool:
        worker.discard()
        return False

    def _fill(self) -> None:
        while True:
            with self._cv:
                while not self._closed and ((todo := self._next()) is None or todo[0] == "wait"):
                    self._cv.wait(todo[1] if todo else 5.0)  # also notices idle workers that died
                if self._closed:
                    idle, self._idle = self._idle, []
                    break
                modules = tuple(self._extras.get(todo[1], [])) if todo[0] == "start" else ()
            if todo[0] == "retire":
                with self._cv:
                    if todo[1] in self._idle:
                        self._idle.remove(todo[1])
                todo[1].discard()
                continue
            try:
                worker = self.start_worker(todo[1], modules)
            except Exception as exc:  # the machine may be short of something: the runs start cold
                self.cannot_warm(todo[1], f"a worker could not start ({exc})")
                continue
            with self._cv:
                self._idle.append(worker)
        for worker in idle:
            worker.discard()

    def start_worker(self, key: WarmKey, modules: Iterable[str] = ()) -> Worker:
        """A new worker for ``key``, importing BASE_MODULES and ``modules``. It dies with the thread
        that calls this (PR_SET_PDEATHSIG): the pool's own, or a sweep's, which outlives it."""
        executor = self.executor
        slot = uuid.uuid4().hex[:12]
        folder = RunFolder(executor.warm_dir / slot)
        uid = executor.take_uid()
        try:
            folder.create((uid, uid) if uid is not None else None)
            sandbox = start_sandbox(executor, key, folder, uid=uid, modules=BASE_MODULES + tuple(modules),
                                    log=LogSink(executor.warm_dir / f"{slot}.log", 64 << 10),
                                    pid_file=executor.pid_file(f"warm-{slot}"), record={"kind": "warm", "id": slot})
        except BaseException:
            shutil.rmtree(folder.root, ignore_errors=True)
            (executor.warm_dir / f"{slot}.log").unlink(missing_ok=True)
            executor.give_back_uid(uid)
            raise
        return Worker(key, folder, uid, sandbox, executor.give_back_uid)
