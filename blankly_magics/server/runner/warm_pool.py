"""The pool of idle warm workers (warm.py): how many, of which interpreter, and when they start.

It fills once the server runs its first backtest, and follows what is asked for: it keeps one
worker per backtest among the last ``size`` ones, of that backtest's interpreter (and network
setting), with the recent models' other top-level imports. A worker taken by a run is
replaced once no backtest is running, or after REFILL_WAIT seconds (a sweep holds it off for
its whole run), so that its imports do not slow the runs. An environment whose worker cannot
import the heavy modules starts cold from then on. One thread starts every worker and lives
as long as the pool: a worker dies with the thread that started it (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from .executor import RunRequest
from .folders import RunFolder
from .logs import LogSink
from .process import Child
from .warm import (BACKTEST_MODULES, BASE_MODULES, IDLE_MB, MIN_RAM_MB, WarmKey, Worker, ready_interpreter,
                   start_sandbox, zip_facts)

if TYPE_CHECKING:
    from .local import LocalExecutor

log = logging.getLogger("blankly_magics.server")

MAX_EXTRA_MODULES = 16  # a model's other top-level imports kept per environment
REFILL_WAIT = 3.0  # seconds a new worker waits for the backtests running to end (its imports would slow them)


def default_size(cores: Optional[int] = None, ram_mb: Optional[int] = None) -> int:
    """Idle workers by default: one per core, in at most a twentieth of the memory."""
    if cores is None or ram_mb is None:
        from ..config import _machine

        cores, ram_mb = _machine()
    return max(0, min(cores, ram_mb // 20 // IDLE_MB))


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

    def for_run(self, request: RunRequest, envs_dir: Path) -> Optional[Worker]:
        """A worker for this run: a backtest whose environment is ready and whose plan has room
        for the imports (warm.MIN_RAM_MB), when one is idle."""
        if (self.size <= 0 or request.kind != "backtest" or request.env.get("BACKTESTING") != "1"
                or request.limits.ram < MIN_RAM_MB):
            return None
        try:
            requirements, imports = zip_facts(request.zip_path)
        except Exception:  # not a usable zip: unpacking it says why, in a cold start
            return None
        interpreter = ready_interpreter(request.python_version, requirements, envs_dir)
        if interpreter is None:
            return None
        return self.take(WarmKey(interpreter, request.network), imports)

    def start(self, worker: Worker, job: dict[str, Any], log: LogSink, pid_file: Path, record: dict[str, Any]
              ) -> Optional[Child]:
        """Hand ``worker`` its run (Worker.start); None, the worker gone, when it could not take it."""
        child = worker.start(job, log, pid_file, record)
        if child is None:
            reason = (worker.sandbox.ready or {}).get("broken")
            if reason:
                self.cannot_warm(worker.key, reason)
            worker.discard()
        else:
            self.note_ready(worker)
        return child

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
                worker.mark_idle(self.executor.pid_file(f"warm-{worker.folder.root.name}"))
        for worker in idle:
            worker.discard()

    def start_worker(self, key: WarmKey, modules: Iterable[str] = ()) -> Worker:
        """A new worker for ``key``, importing BASE_MODULES, BACKTEST_MODULES and ``modules``. It dies with the thread
        that calls this (PR_SET_PDEATHSIG): the pool's own, or a sweep's, which outlives it."""
        executor = self.executor
        slot = uuid.uuid4().hex[:12]
        folder = RunFolder(executor.warm_dir / slot)
        uid = executor.take_uid()
        try:
            folder.create((uid, uid) if uid is not None else None)
            imports = BASE_MODULES + BACKTEST_MODULES + tuple(modules)
            sandbox = start_sandbox(executor, key, folder, uid=uid, modules=imports,
                                    log=LogSink(executor.warm_dir / f"{slot}.log", 64 << 10),
                                    pid_file=executor.pid_file(f"worker-{slot}"), record={"kind": "warm", "id": slot})
        except BaseException:
            shutil.rmtree(folder.root, ignore_errors=True)
            (executor.warm_dir / f"{slot}.log").unlink(missing_ok=True)
            executor.give_back_uid(uid)
            raise
        return Worker(key, folder, uid, sandbox, executor.give_back_uid)
