"""``LocalExecutor``: runs start on this machine, each process in a bubblewrap sandbox.

Per run: a folder (folders.RunFolder) whose writable parts are mounted at the
sandbox's fixed paths, the version unpacked into it, the interpreter chosen or
its venv built (by pip inside the same kind of sandbox), then each process
started through launch.py and watched by process.watch. Under a server running
as root every run also gets a user id of its own from a pool (``RunUids``), so
the sandboxed process is an unprivileged user of this machine.

A backtest whose environment is ready starts warm when it can: in a pre-started
sandbox that has already imported the heavy modules (warm.py). A sweep's points
start from one sandbox that imported them once (points.py).

With ``isolation="none"`` the same steps run unconfined, as the server's user,
with the same environment allowlist and the same limits (polled).
"""
from __future__ import annotations

import os
import posixpath
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import envs, warm
from .uids import RunUids
from .warm_pool import WarmPool, default_size
from .executor import Executor, Exit, OnStart, PointExit, PointStart, Prepared, RunFailed, RunLimits, RunRequest
from .folders import WRITABLE, RunFolder, contained, dir_size, write_new
from .prepare import choose_interpreter, unpack
from .logs import LogSink
from .process import (NICE, RUN_TOKEN_VAR, STOPPED, Child, Limits, RunStop, launcher_command, reap_leftovers,
                      spawn, watch)
from .sandbox import (HOOK_DIR, SANDBOX_USER, SANDBOX_VIEW, SandboxError, SandboxSpec, View,
                      account_files, bwrap_command, check_prefix, interpreter_prefixes)

STAGE_CANDIDATES = ("/mnt", "/media", "/srv", "/var/tmp", "/tmp")  # any existing folder: covered privately
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOCALE_VARS = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE", "LC_MONETARY",
               "LC_MESSAGES", "TZ")
_SECRET_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass
class LocalPrepared(Prepared):
    folder: RunFolder = None  # type: ignore[assignment]
    interpreter: envs.Interpreter = None  # type: ignore[assignment]
    main_script: str = ""
    working_directory: str = "."
    uid: Optional[int] = None  # the run's own user id (root servers)
    pid_file: Path = None  # type: ignore[assignment]
    worker: Optional[warm.Worker] = None  # the warm worker its first start is handed to
    counted: bool = False  # a backtest the warm pool counts as running until released
    worker_log: Optional[Path] = None  # its warm worker's own log, removed with the run's files


class LocalExecutor(Executor):
    """Runs on this machine, confined by bubblewrap unless ``bwrap`` is None."""

    def __init__(self, data_dir: Path, bwrap: Optional[str], *, grace: float = 5.0,
                 warm_workers: Optional[int] = None) -> None:
        """``warm_workers``: idle warm workers kept (None: warm.default_size(); 0: every run starts cold)."""
        self.data_dir = Path(data_dir)
        self.bwrap = bwrap
        self.isolation = "bubblewrap" if bwrap else "none"
        self.grace = grace
        self._runs = self.data_dir / "runs"
        self._pids = self._runs / "pids"
        self.envs_dir = self.data_dir / "envs"
        self._root = os.geteuid() == 0
        self._uids = RunUids(self.data_dir) if (bwrap and self._root) else None
        self._stage = next((p for p in STAGE_CANDIDATES if os.path.isdir(p)), "/tmp")
        self.accounts: Optional[tuple[Path, Path]] = None  # the sandbox's passwd and group
        self._versions: Optional[list[str]] = None
        self.warm_dir = self._runs / "warm"
        self.pool = WarmPool(self, default_size() if warm_workers is None else warm_workers)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> list[dict[str, Any]]:
        from ...files import private_dir

        for folder in (self._runs, self._runs / "backtests", self._runs / "live", self._pids):
            private_dir(folder)  # also tightens folders an older server made with the umask
        if self.bwrap:
            self.accounts = account_files(self._runs / "sandbox")
        leftovers = reap_leftovers(self._pids)
        shutil.rmtree(self.warm_dir, ignore_errors=True)  # idle workers of an earlier server: gone with it
        return [rec for rec in leftovers if rec.get("kind") in ("backtest", "live")]

    def close(self) -> None:
        self.pool.close()

    def python_versions(self) -> list[str]:
        if self._versions is None:
            # Blankly itself needs 3.7 or newer.
            self._versions = [v for v in envs.python_versions() if tuple(map(int, v.split("."))) >= (3, 7)]
        return list(self._versions)

    # -- one run ----------------------------------------------------------------

    def prepare(self, request: RunRequest, log: LogSink, stop: RunStop) -> LocalPrepared:
        """Unpack the version into the run's folder and choose its interpreter (maybe building a venv)."""
        if request.kind == "backtest":
            self.pool.begin()  # until release()
        worker = self.pool.for_run(request, self.envs_dir)
        uid = worker.hand_over(RunFolder(request.folder)) if worker else self.take_uid()
        worker_log = worker.log if worker else None
        owner = (uid, uid) if uid is not None else None
        try:
            folder = RunFolder(request.folder) if worker else RunFolder(request.folder).create(owner)
            info = unpack(request.zip_path, folder, owner)
            prepared = LocalPrepared(request, info.manifest, "", folder=folder, main_script=info.main_script,
                                     working_directory=info.working_directory, uid=uid,
                                     pid_file=self.pid_file(request.run_id), worker=worker,
                                     counted=request.kind == "backtest", worker_log=worker_log)
            if stop.is_set():
                raise RunFailed("stopped")
            if worker is not None:  # chosen a moment ago, from the same requirements
                prepared.interpreter = worker.key.interpreter
            else:
                prepared.interpreter = choose_interpreter(request.python_version, folder.model / info.requirements,
                                                          self.envs_dir, self._builder(prepared, log, stop))
        except BaseException:
            if worker is not None:
                worker.discard()
            RunFolder(request.folder).clear()  # a half-unpacked copy goes at once
            self.give_back_uid(uid)
            if request.kind == "backtest":
                self.pool.done()
            raise
        prepared.python_version = prepared.interpreter.version
        if not prepared.interpreter.shared:
            log.note(f"using the cached environment {prepared.interpreter.env_dir.name[:12]} "
                     f"(python {prepared.interpreter.version})")
        return prepared

    def run(self, prepared: Prepared, log: LogSink, stop: RunStop, on_start: OnStart) -> Exit:
        assert isinstance(prepared, LocalPrepared)
        request = prepared.request
        if stop.is_set():
            return Exit(None, STOPPED)
        folder = prepared.folder
        view = self._view(prepared)
        env = self._environment(prepared, view)
        secrets = self._place_secrets(prepared)
        try:
            argv = (self.python_inside(prepared.interpreter), posixpath.join(view.model, prepared.main_script))
            cwd = posixpath.normpath(posixpath.join(view.model, prepared.working_directory))
            child = self._start_warm(prepared, argv, cwd, env, log)
            if child is None:
                spec = SandboxSpec(
                    folders={name: getattr(folder, name) for name in WRITABLE}, argv=argv, cwd=cwd,
                    prefixes=self.prefixes(prepared.interpreter), env_dir=prepared.interpreter.env_dir,
                    network=request.network, account_files=self.accounts,
                )
                child = spawn(self._command(spec, prepared, umask=0o077), env=env,
                              cwd=None if self.bwrap else folder.model / prepared.working_directory, log=log,
                              pid_file=prepared.pid_file, record=_record(request), sandboxed=bool(self.bwrap))
            on_start(child.pid, child.started)
            limits = request.limits
            code, reason = watch(child, Limits(limits.ram, limits.timeout if request.deadline else None,
                                               limits.disk, limits.processes), stop, folder.disk_use, self.grace)
            return Exit(code, reason, folder.reports(), child.started, time.time())
        finally:
            for path in secrets:
                path.unlink(missing_ok=True)

    def _start_warm(self, prepared: LocalPrepared, argv: tuple[str, str], cwd: str, env: dict[str, str],
                    log: LogSink) -> Optional[Child]:
        """Hand the run to its warm worker; None when it has none or the worker cannot take it (cold)."""
        worker, prepared.worker = prepared.worker, None  # a worker serves one start
        if worker is None:
            return None
        job = {"argv": list(argv), "cwd": cwd, "env": env,
               "rlimits": run_rlimits(prepared.request.limits, prepared.uid is not None)}
        return self.pool.start(worker, job, log, prepared.pid_file, _record(prepared.request))

    def run_points(self, requests: Sequence[RunRequest], log_for: Callable[[RunRequest], LogSink], stop: RunStop,
                   on_start: PointStart, on_exit: PointExit, *, parallel: int = 1,
                   stopped: Callable[[RunRequest], bool] = lambda request: False) -> None:
        """Executor.run_points, the points run in lanes forked from one warm worker (points.py) when they can be."""
        from .points import Sweep, forkable

        if not forkable(self, requests):
            return super().run_points(requests, log_for, stop, on_start, on_exit, parallel=parallel,
                                      stopped=stopped)
        Sweep(self, requests, log_for, stop, on_start, on_exit, parallel, stopped).run()

    def release(self, prepared: Prepared, *, keep_report: bool = True) -> None:
        assert isinstance(prepared, LocalPrepared)
        folder = prepared.folder
        for name in prepared.request.secret_files:
            try:
                self._secret_path(prepared, name).unlink(missing_ok=True)
            except RunFailed:  # it leads elsewhere now: the folder goes below, the link with it
                pass
        if prepared.worker is not None:  # prepared, never started
            prepared.worker.discard()
            prepared.worker = None
        if prepared.worker_log is not None:  # its sandbox has ended: nothing writes it any more
            prepared.worker_log.unlink(missing_ok=True)
        folder.clear(keep_report=keep_report)
        self.give_back_uid(prepared.uid)
        prepared.uid = None
        if prepared.counted:
            prepared.counted = False
            self.pool.done()

    def take_uid(self) -> Optional[int]:
        """A user id of its own for a run (None unless the server is root and runs are confined)."""
        return self._uids.take() if self._uids else None

    def give_back_uid(self, uid: Optional[int]) -> None:
        if uid is not None and self._uids is not None:
            self._uids.give_back(uid)

    def pid_file(self, run_id: str) -> Path:
        return self._pids / f"{run_id}.json"

    # -- what a process gets ------------------------------------------------------

    def _view(self, prepared: LocalPrepared) -> View:
        if self.bwrap:
            return SANDBOX_VIEW
        folder, env_dir = prepared.folder, prepared.interpreter.env_dir
        return View(str(folder.model), str(folder.report), str(folder.home), str(folder.tmp), str(HOOK_DIR),
                    str(env_dir or ""))

    def python_inside(self, interpreter: envs.Interpreter) -> str:
        """The interpreter's path as the run's process sees it."""
        if interpreter.env_dir is not None and self.bwrap:
            return f"{SANDBOX_VIEW.env}/bin/python"
        return str(interpreter.python)

    def prefixes(self, interpreter: envs.Interpreter) -> tuple[Path, ...]:
        python = interpreter.base if interpreter.env_dir is not None else interpreter.python
        try:
            return tuple(check_prefix(p, self.data_dir) for p in interpreter_prefixes(Path(python)))
        except SandboxError as exc:
            raise RunFailed(str(exc)) from None

    def _environment(self, prepared: LocalPrepared, view: View) -> dict[str, str]:
        return self.environment(prepared.interpreter, view, prepared.request.env)

    def environment(self, interpreter: envs.Interpreter, view: View, extra: dict[str, str]) -> dict[str, str]:
        """A run's process's whole environment: an allowlist, never a copy of the server's."""
        env = base_environment(view, posixpath.dirname(self.python_inside(interpreter)), extra)
        env.update({
            "PYTHONPATH": view.hook,  # the hook, first and alone: only runs see it
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the hook dir or the run's copy
            "PYTHONNOUSERSITE": "1",
            "MPLBACKEND": "Agg",
            "BROWSER": "true",  # webbrowser (Blankly's charts and login) runs `true URL`: no browser opens
            "BLANKLY_MAGICS_REPORT_DIR": view.report,
        })
        if interpreter.env_dir is not None:
            env["VIRTUAL_ENV"] = view.env
        return env

    def _place_secrets(self, prepared: LocalPrepared) -> list[Path]:
        """Write the request's secret files into the working directory, 0600 and the run's own."""
        placed = []
        for name, data in prepared.request.secret_files.items():
            if not name or set(name) - _SECRET_NAME_CHARS or name.startswith("."):
                raise RunFailed(f"a secret file name must be a plain file name, not {name[:40]!r}")
            path = self._secret_path(prepared, name)
            write_new(path, data)
            if prepared.uid is not None:
                os.chown(path, prepared.uid, prepared.uid, follow_symlinks=False)
            placed.append(path)
        return placed

    def _secret_path(self, prepared: LocalPrepared, name: str) -> Path:
        try:
            return contained(prepared.folder.model, posixpath.join(prepared.working_directory, name))
        except ValueError:
            raise RunFailed("the run's working directory now leads out of its folder (its code replaced it "
                            "by a link): its secret files are not placed") from None

    def _command(self, spec: SandboxSpec, prepared: LocalPrepared, *, umask: int) -> list[str]:
        """The launcher command for one start of a run (see launch.py)."""
        return self.launch(spec, prepared.uid, run_rlimits(prepared.request.limits, prepared.uid is not None),
                           umask=umask)

    def launch(self, spec: SandboxSpec, uid: Optional[int], rlimits: dict[str, int], *, umask: int = 0o077
               ) -> list[str]:
        """The launcher command that starts ``spec`` (its argv alone when runs are not confined)
        with the kernel limits ``rlimits`` (run_rlimits) and no core dumps."""
        launch: dict[str, Any] = {"rlimits": {"RLIMIT_CORE": 0, **rlimits}, "nice": NICE, "umask": umask}
        if not self.bwrap:
            launch["argv"] = list(spec.argv)
            return launcher_command(launch)
        launch["parent"] = os.getpid()  # a sandbox dies with its server, even one killed while it starts
        if uid is not None:
            launch.update(stage=self._stage, sources=[str(m.source) for m in spec.mounts()], uid=uid, gid=uid,
                          argv=bwrap_command(spec, self.bwrap, lambda i, m: f"{self._stage}/{i}"))
        else:
            launch["argv"] = bwrap_command(spec, self.bwrap)
        return launcher_command(launch)

    def probe(self) -> Optional[str]:
        """Start a trivial sandbox as a run's would be started; None if it works, else why not."""
        import subprocess
        import sys

        spec = SandboxSpec(folders={}, argv=(sys.executable, "-I", "-S", "-c", "pass"), cwd="/",
                           prefixes=tuple(interpreter_prefixes(Path(sys.executable))),
                           account_files=self.accounts)
        uid = self._uids.base + RunUids.SIZE - 1 if self._uids else None  # never handed to a run: kept free
        try:
            done = subprocess.run(self.launch(spec, uid, run_rlimits(RunLimits(), uid is not None)), capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL, cwd="/")
        except (OSError, subprocess.SubprocessError) as exc:
            return f"a test sandbox could not start ({exc})"
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return f"a test sandbox failed ({lines[-1] if lines else f'exit code {done.returncode}'})"
        return None

    def _builder(self, prepared: LocalPrepared, log: LogSink, stop: RunStop) -> envs.Builder:
        if not self.bwrap:
            return envs.Unconfined(log=log.write, stop=stop)
        return _SandboxBuilder(self, prepared, log, stop)


class _SandboxBuilder:
    """Environment builds (venv, then pip) in the run's own sandbox, network on."""

    def __init__(self, executor: LocalExecutor, prepared: LocalPrepared, log: LogSink, stop: RunStop) -> None:
        self.executor = executor
        self.prepared = prepared
        self.log = log
        self.stop = stop

    def env_path(self, build_dir: Path) -> str:
        return SANDBOX_VIEW.env

    def run(self, argv: list[str], build_dir: Path, base: Path, timeout: float) -> tuple[int, str]:
        prepared, executor = self.prepared, self.executor
        if prepared.uid is not None:
            os.chown(build_dir, prepared.uid, prepared.uid)
        pip_env, pip_paths = envs.pip_settings()
        folder = prepared.folder
        from .sandbox import Mount

        spec = SandboxSpec(
            folders={"home": folder.home, "tmp": folder.tmp, "env": build_dir},
            argv=tuple(argv), cwd=SANDBOX_VIEW.home,
            prefixes=executor.prefixes(envs.Interpreter(base, "", None)),
            extra=tuple(Mount(p, str(p)) for p in pip_paths), network=True, account_files=executor.accounts,
        )
        env = base_environment(SANDBOX_VIEW, f"{SANDBOX_VIEW.env}/bin", pip_env)
        self.log.write("$ " + " ".join(argv) + "\n")
        child = spawn(executor._command(spec, prepared, umask=0o022), env=env, cwd=None, log=self.log,
                      pid_file=prepared.pid_file, record={"kind": "env", "id": prepared.request.run_id},
                      sandboxed=True)
        limits = prepared.request.limits
        code, reason = watch(child, Limits(limits.ram, timeout, limits.disk, limits.processes), self.stop,
                             lambda: folder.disk_use() + dir_size(build_dir), executor.grace)
        if reason == STOPPED:
            raise envs.StepFailed("stopped")
        if reason is not None and reason.startswith("stopped: exceeded the plan's time"):
            import subprocess

            raise subprocess.TimeoutExpired(argv, timeout)
        if reason is not None:
            raise envs.StepFailed(reason)
        return code, self.log.tail(envs._PIP_TAIL * 2)


def base_environment(view: View, python_bin: str, extra: dict[str, str]) -> dict[str, str]:
    """What every process of a run gets (an allowlist, never a copy of the server's environment):
    the locale, ``extra``, then PATH, HOME, TMPDIR, the account, and a fresh run token."""
    env = {name: os.environ[name] for name in LOCALE_VARS if name in os.environ}
    env.update(extra)
    path = SYSTEM_PATH if python_bin in SYSTEM_PATH.split(":") else f"{python_bin}:{SYSTEM_PATH}"
    env.update({"PATH": path, "HOME": view.home, "TMPDIR": view.tmp, "USER": SANDBOX_USER,
                "LOGNAME": SANDBOX_USER, RUN_TOKEN_VAR: uuid.uuid4().hex})
    return env


def run_rlimits(limits: RunLimits, own_uid: bool, runs: int = 1) -> dict[str, int]:
    """The kernel's limits on a run's processes: the largest file (the whole disk allowance) and,
    for ``runs`` runs under a user id of their own, the backstop against a fork bomb between two
    polls (it counts threads too)."""
    rlimits = {"RLIMIT_FSIZE": limits.disk << 20}
    if own_uid:
        rlimits["RLIMIT_NPROC"] = (limits.processes * 4 + 64) * runs
    return rlimits


def _record(request: RunRequest) -> dict[str, Any]:
    kind = "backtest" if request.kind == "backtest" else "live"
    return {"kind": kind, "id": request.run_id.split("-", 1)[1]}
