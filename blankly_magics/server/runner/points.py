"""A sweep's points from one sandbox (``LocalExecutor.run_points``).

One user's one version is one trust domain, so its environment is prepared once, one warm
worker (warm.py) imports the heavy modules once, and the points run in ``parallel`` lanes:
processes forked from it that each run several points one after another (worker.py says how
each starts afresh; a fork per point cost as much as a short backtest). The worker is an idle
one of the pool when there is one for the version's interpreter (the sweep starts at once),
else one started for the sweep. Its four folders
hold one subfolder per point: point N sees ``/blankly/model/N`` (its own copy of the
version; its working directory is there), ``/blankly/report/N`` (where its hook writes),
``/blankly/home/N`` (HOME) and ``/tmp/N`` (TMPDIR). The version is unpacked once, beside
the sandbox's folders (out of the points' reach), and copied for each point. At most
``parallel`` points run at once, one per lane; the next points' copies are made and the ended
points' results stored meanwhile. A lane gets its next point only once its last one is
reported, so a limit's kill can only end the point it was meant for. The first point
to complete leaves its Blankly price cache to the points copied after it when they all ask for
one period (price_cache.py).

Each point gets its own environment variables (``BACKTESTING_ID``, ``BACKTESTING_ARGS``,
``BLANKLY_PARAMETERS``...), output pipe (its own log) and kernel limit on file size, and the
server watches and limits it as it does a run's process (memory and processes of its tree,
its time, the disk its four folders take): process.watch with a ``Point``, whose process is
its lane's. The worker reports each point's exit code; a stop ends every point. When the worker cannot be had
(the environment cannot import the heavy modules) or stops in the middle, the points not
started yet run as separate runs (``Executor.run_points``'s default).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import posixpath
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from ...files import private_dir
from . import price_cache, warm
from .executor import Executor, Exit, PointsCall, RunFailed, RunRequest
from .folders import WRITABLE, RunFolder, dir_size, make_private_tree
from .logs import LogSink
from .prepare import unpack
from .process import RUN_TOKEN_VAR, STOPPED, Limits, RunStop, usage, watch
from .sandbox import HOOK_DIR, SANDBOX_VIEW, View

if TYPE_CHECKING:
    import psutil

    from .local import LocalExecutor

LOST = "stopped: the sweep's worker ended before this point did"
REPORT_WAIT = 10.0  # seconds a killed point's exit may take to be reported by the worker


def forkable(executor: "LocalExecutor", requests: Sequence[RunRequest]) -> bool:
    """True when the points can share one sandbox: backtests of one version, as one run's would."""
    if executor.pool.size <= 0 or not requests or requests[0].limits.ram < warm.MIN_RAM_MB:
        return False
    first = requests[0]
    same = ("zip_path", "python_version", "network", "limits", "deadline")
    return all(r.kind == "backtest" and r.env.get("BACKTESTING") == "1" and not r.secret_files
               and all(getattr(r, name) == getattr(first, name) for name in same) for r in requests)


def host_process(parent: int, ns_pid: int) -> "Optional[psutil.Process]":
    """The child of ``parent`` that is ``ns_pid`` inside its PID namespace (None once gone)."""
    import psutil

    try:
        with open(f"/proc/{parent}/task/{parent}/children") as fh:
            pids = [int(p) for p in fh.read().split()]
    except OSError:
        try:
            pids = [p.pid for p in psutil.Process(parent).children()]
        except psutil.Error:
            return None
    for pid in pids:
        if _ns_pid(pid) == ns_pid:
            try:
                return psutil.Process(pid)
            except psutil.Error:
                return None
    return None


def _ns_pid(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def _worker_process(sandbox: warm.Sandbox) -> Optional[int]:
    """The host pid of the worker inside ``sandbox`` (its ready message gives its pid inside)."""
    import psutil

    inside = (sandbox.ready or {}).get("ready")
    try:
        root = psutil.Process(sandbox.child.pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return None
    return next((p.pid for p in procs if _ns_pid(p.pid) == inside), None)


class Point:
    """One point's process as the server sees it: what process.watch needs of it."""

    def __init__(self, key: int, log: LogSink) -> None:
        self.key = key
        self.log = log
        self.proc: Optional["psutil.Process"] = None  # its host process, once found
        self.ns_pid: Optional[int] = None
        self.code: Optional[int] = None
        self.lost = False
        self.started = threading.Event()
        self._ended = threading.Event()
        self._wake: Optional[threading.Event] = None

    # -- reported by the worker (the reader thread) --------------------------------

    def on_started(self, ns_pid: int) -> None:
        self.ns_pid = ns_pid
        self.started.set()

    def on_exited(self, code: int) -> None:
        self.code = code
        self._ended.set()
        if self._wake is not None:
            self._wake.set()

    def on_lost(self) -> None:
        if self.code is None:
            self.lost = True
        self.started.set()
        self.on_exited(self.code if self.code is not None else -signal.SIGKILL)

    # -- what watch() uses ------------------------------------------------------------

    def exited(self) -> bool:
        return self._ended.is_set()

    def wake_on_exit(self, wake: threading.Event) -> None:
        self._wake = wake
        if self.exited():
            wake.set()

    def tree(self) -> list[Any]:
        import psutil

        if self.proc is None:
            return []
        try:
            return [self.proc] + self.proc.children(recursive=True)
        except psutil.Error:
            return []

    def usage(self) -> tuple[int, int]:
        return usage(self.tree(), False)

    def _signal(self, sig: int) -> None:
        for proc in self.tree():
            try:
                proc.send_signal(sig)
            except Exception:  # gone meanwhile
                pass

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self, grace: float) -> None:
        if not self.exited():
            self._signal(signal.SIGTERM)
            self._ended.wait(grace)
        self.finish()

    def finish(self) -> int:
        if not self.exited():
            self.kill()
            self._ended.wait(REPORT_WAIT)
        self.log.drain()
        return self.code if self.code is not None else -signal.SIGKILL


class Turns:
    """``slots`` lanes taken in the points' order: point N waits for the points before it, then
    runs in the lowest free lane (the worker's process for that lane, see worker.py)."""

    def __init__(self, slots: int) -> None:
        self._changed = threading.Condition()
        self._free = list(range(slots))
        self._next = 0

    @contextlib.contextmanager
    def slot(self, n: int) -> Iterator[int]:
        with self._changed:
            self._changed.wait_for(lambda: self._next == n and bool(self._free))
            self._next += 1
            lane = self._free.pop(0)
            self._changed.notify_all()
        try:
            yield lane
        finally:
            with self._changed:
                self._free.append(lane)
                self._free.sort()
                self._changed.notify_all()


class Sweep(PointsCall):
    """One call of run_points (see the module's docstring)."""

    def __init__(self, executor: "LocalExecutor", *call: Any) -> None:
        super().__init__(*call)
        self.executor = executor
        self.worker: Optional[warm.Worker] = None
        self.zygote: Optional[int] = None  # the worker's host pid
        self.points: dict[int, Point] = {}
        self.active: set[RunStop] = set()
        self.lost = False
        self.over = threading.Event()
        self._send = threading.Lock()
        self._turns = Turns(self.parallel)
        self.cache: Optional[str] = None  # the price cache's folder in the version, until a point's is shared
        self._cache_lock = threading.Lock()

    def run(self) -> None:
        self.executor.pool.begin(sweep=True)
        try:
            self._run()
        finally:
            self.executor.pool.done(sweep=True)

    def _run(self) -> None:
        try:
            key, imports = self._key()
        except RunFailed as exc:
            for request in self.requests:
                self.on_exit(request, Exit(None, STOPPED if self.stop.is_set() else str(exc)))
            return
        self.worker = self._take(key, imports) if key is not None else None
        if self.worker is None:
            return self._cold(self.requests)
        reader = threading.Thread(target=self._read, name="sweep-reader", daemon=True)
        relay = threading.Thread(target=self._relay, name="sweep-stop", daemon=True)
        try:
            owner = (self.worker.uid, self.worker.uid) if self.worker.uid is not None else None
            version = RunFolder(self.worker.folder.root / "version")  # out of the sandbox's sight
            self.info = unpack(self.requests[0].zip_path, version, owner)
            self.owner, self.template = owner, version.model
            if price_cache.one_period([r.env.get("BACKTESTING_ARGS") for r in self.requests]):
                self.cache = price_cache.cache_folder(self.template, self.info.working_directory)
            reader.start()
            relay.start()
            # Twice the slots in threads: a point's copy and its end's bookkeeping overlap the others' runs.
            with concurrent.futures.ThreadPoolExecutor(2 * self.parallel, thread_name_prefix="point") as pool:
                for future in [pool.submit(self._one, n, r) for n, r in enumerate(self.requests)]:
                    future.result()
        except RunFailed as exc:  # the version cannot be unpacked: no point can run
            for request in self.requests:
                self.on_exit(request, Exit(None, str(exc)))
        finally:
            self.over.set()
            try:
                self.worker.sandbox.ctl.shutdown(socket.SHUT_RDWR)  # the worker ends, and any point left with it
            except OSError:  # it ended already
                pass
            self.worker.discard()
            if reader.is_alive():
                reader.join(10)

    def _key(self) -> tuple[Optional[warm.WarmKey], list[str]]:
        """The environment, ready (built once when it needs it, as the first point's run would)."""
        first = self.requests[0]
        executor = self.executor
        try:
            requirements, imports = warm.zip_facts(first.zip_path)
        except Exception:  # each point's run says what is wrong with it
            return None, []
        interpreter = warm.ready_interpreter(first.python_version, requirements, executor.envs_dir)
        if interpreter is None:
            prepared = executor.prepare(first, self.log_for(first), self.stop)
            executor.release(prepared, keep_report=False)
            interpreter = prepared.interpreter
        return warm.WarmKey(interpreter, first.network), imports

    def _take(self, key: warm.WarmKey, imports: list[str]) -> Optional[warm.Worker]:
        """An idle worker of the pool, or one started for the sweep; forking, or None."""
        from .local import run_rlimits

        pool = self.executor.pool
        worker = pool.take(key, imports)
        if worker is None:
            try:
                worker = pool.start_worker(key, imports)
            except Exception:
                return None
        reason = worker.sandbox.wait_ready()
        if reason is None:
            limits = self.requests[0].limits
            rlimits = run_rlimits(limits, worker.uid is not None, self.parallel)  # the kernel's backstops
            try:
                worker.sandbox.ctl.send(json.dumps({"fork": True, "rlimits": rlimits}).encode())
            except OSError:
                reason = "the worker stopped"
        self.zygote = _worker_process(worker.sandbox) if reason is None else None
        if reason is not None or self.zygote is None:
            if reason is not None and worker.sandbox.ready and "broken" in worker.sandbox.ready:
                pool.cannot_warm(key, reason)
            worker.discard()
            return None
        pool.note_ready(worker)
        return worker

    def _cold(self, requests: Sequence[RunRequest]) -> None:
        Executor.run_points(self.executor, requests, self.log_for, self.stop, self.on_start, self.on_exit,
                            parallel=self.parallel, stopped=self.stopped)

    # -- the worker's reports, and the stop ---------------------------------------------

    def _read(self) -> None:
        assert self.worker is not None
        while True:
            message = warm.receive(self.worker.sandbox.ctl, None)
            if message is None:
                break
            point = self.points.get(message.get("started", message.get("exited")))
            if point is None:
                continue
            if "started" in message:
                point.on_started(message["pid"])
            else:
                point.on_exited(message["code"])
        self.lost = True
        for point in list(self.points.values()):
            point.on_lost()

    def _relay(self) -> None:
        while not self.stop.wait(0.1):
            if self.over.is_set():
                return
        for point_stop in list(self.active):
            point_stop.set()

    # -- one point ------------------------------------------------------------------------

    def _one(self, n: int, request: RunRequest) -> None:
        """One point: its folders are made while other points run, then it takes its turn (points
        start in their order, ``parallel`` at once) and holds a slot for its process's life only;
        its folders go and its end is reported once the slot is free."""
        folders = {name: getattr(self.worker.folder, name) / str(n) for name in WRITABLE}  # type: ignore[union-attr]
        problem = None
        if not (self.stop.is_set() or self.stopped(request) or self.lost):
            try:
                self._prepare(folders)
            except Exception as exc:  # e.g. no disk left for its copy: this point fails, the others go on
                problem = f"the point could not start: {exc}"
        with self._turns.slot(n) as lane:
            ran, end = self._run_in_slot(n, lane, request, folders, problem)
            if end is None:  # the worker was gone before this point started: a run of its own, in this slot
                self._clean(request, folders, ran, end)
                self._cold([request])
                return
        self._clean(request, folders, ran, end)
        if ran:
            end = dataclasses.replace(end, reports=RunFolder(request.folder).reports())
        self.on_exit(request, end)

    def _run_in_slot(self, n: int, lane: int, request: RunRequest, folders: dict[str, Path],
                     problem: Optional[str]) -> tuple[bool, Optional[Exit]]:
        """(whether its process was asked for, its end): None when the worker is gone."""
        if problem is None and (self.stop.is_set() or self.stopped(request)):
            problem = STOPPED
        if problem is not None:
            return False, Exit(None, problem)
        if self.lost:
            return False, None
        point_stop = RunStop()
        self.active.add(point_stop)
        try:
            return True, self._run_point(n, lane, request, folders, point_stop)
        except Exception as exc:
            return True, Exit(None, f"the point could not start: {exc}")
        finally:
            self.active.discard(point_stop)

    def _clean(self, request: RunRequest, folders: dict[str, Path], ran: bool, end: Optional[Exit]) -> None:
        """The point's folders go: its report is kept in its run's folder, and the first completed
        point's price cache in the version's copy."""
        if ran and end is not None and end.code == 0 and end.reason is None:
            self._share_cache(folders["model"])
        if ran:
            report = private_dir(request.folder) / "report"
            shutil.rmtree(report, ignore_errors=True)
            if folders["report"].exists():
                os.rename(folders["report"], report)
        for path in folders.values():
            shutil.rmtree(path, ignore_errors=True)

    def _share_cache(self, model: Path) -> None:
        """The first completed point's price cache goes to the points copied after it (price_cache.py)."""
        with self._cache_lock:
            if self.cache is not None and price_cache.share(model, self.template, self.cache, self.owner):
                self.cache = None

    def _prepare(self, folders: dict[str, Path]) -> None:
        """The point's own copy of the version, and its empty report, home and tmp, all private."""
        shutil.copytree(self.template, folders["model"], symlinks=True, copy_function=shutil.copy)
        for name in ("report", "home", "tmp"):
            folders[name].mkdir(mode=0o700)
        for path in folders.values():
            make_private_tree(path, self.owner)

    def _run_point(self, n: int, lane: int, request: RunRequest, folders: dict[str, Path], point_stop: RunStop
                   ) -> Optional[Exit]:
        assert self.worker is not None
        log = self.log_for(request)
        point = Point(n, log)
        self.points[n] = point
        read_end, write_end = os.pipe()
        try:
            with self._send:
                warm.send_job(self.worker.sandbox.ctl, self._job(n, lane, request), write_end)
        except OSError:
            os.close(read_end)
            return None
        finally:
            os.close(write_end)
        log.attach(os.fdopen(read_end, "rb", buffering=0))
        started = time.time()
        point.started.wait()
        if point.ns_pid is not None and self.zygote is not None:
            point.proc = host_process(self.zygote, point.ns_pid)
        self.on_start(request, point.proc.pid if point.proc is not None else None, started)
        if self.stop.is_set():
            point_stop.set()
        limits = request.limits
        code, reason = watch(point, Limits(limits.ram, limits.timeout if request.deadline else None, limits.disk,
                                           limits.processes), point_stop,
                             lambda: sum(dir_size(p) for p in folders.values()), self.executor.grace)
        if point.lost and reason is None:
            reason = LOST
        return Exit(code, reason, {}, started, time.time())

    def _job(self, n: int, lane: int, request: RunRequest) -> dict[str, Any]:
        executor, info = self.executor, self.info
        interpreter = self.worker.key.interpreter  # type: ignore[union-attr]
        if executor.bwrap:
            inside = SANDBOX_VIEW
            view = View(f"{inside.model}/{n}", f"{inside.report}/{n}", f"{inside.home}/{n}", f"{inside.tmp}/{n}",
                        inside.hook, inside.env)
        else:
            folder = self.worker.folder  # type: ignore[union-attr]
            view = View(*(str(getattr(folder, name) / str(n)) for name in WRITABLE), str(HOOK_DIR),
                        str(interpreter.env_dir or ""))
        env = executor.environment(interpreter, view, request.env)
        env[RUN_TOKEN_VAR] = self.worker.sandbox.token  # type: ignore[union-attr]
        return {"key": n, "lane": lane, "root": view.model,
                "argv": [executor.python_inside(interpreter), posixpath.join(view.model, info.main_script)],
                "cwd": posixpath.normpath(posixpath.join(view.model, info.working_directory)), "env": env,
                "rlimits": {"RLIMIT_FSIZE": request.limits.disk << 20}}
