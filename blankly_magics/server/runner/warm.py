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
background (warm_pool.py). So no state passes from one run to the next, and every run has a
sandbox of its own, as a cold run has; the server watches, limits and stops it as a cold
run's process.

Only backtests start warm, and only with an environment that is ready (the server's own, or a
cached venv) and a plan with room for the imports (``MIN_RAM_MB``): one that needs building, a
small plan, and live models start cold.
"""
from __future__ import annotations

import array
import ast
import json
import os
import shutil
import socket
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from . import envs
from .folders import WRITABLE, RunFolder
from .logs import LogSink
from .process import RUN_TOKEN_VAR, Child, spawn, write_pid_record
from .sandbox import HOOK_DIR, SANDBOX_VIEW, WORKER, WORKER_DIR, SandboxSpec, View

if TYPE_CHECKING:
    from .local import LocalExecutor

BASE_MODULES = ("numpy", "pandas", "blankly")  # as worker.py imports them
# What every Blankly backtest imports only once it runs (shaping its result, printing it): imported
# by the worker too, so a sweep's lanes, forked from it, do not import them one by one.
BACKTEST_MODULES = ("pandas.core.methods.to_dict", "pandas.io.formats.string")
MAX_SCRIPT_BYTES = 256 << 10  # a main script larger than this is not read for its imports
MAX_MESSAGE = 1 << 20
READY_TIMEOUT = 120.0  # seconds a run waits for its worker's imports before it starts cold
IDLE_MB = 125  # an idle worker's resident memory, measured (docs/server/runs.md): sizes the pool
MIN_RAM_MB = 4 * IDLE_MB  # a run whose plan allows less starts cold: the imports would take much of it


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
                                              str(folder.tmp), str(HOOK_DIR), str(key.interpreter.env_dir or ""))
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

    def mark_idle(self, pid_file: Path) -> None:
        """Its pid record becomes ``pid_file`` (``pids/warm-<slot>.json``: one per idle worker of the pool)."""
        child = self.sandbox.child
        os.replace(child.pid_file, pid_file)
        child.pid_file = pid_file

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
