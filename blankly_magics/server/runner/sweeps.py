"""Sweeps: many backtests of one version for one user, run through ``Executor.run_points``.

Sweeps wait in one queue and run one at a time, each with ``parallel`` points at once (the
server's backtest worker count). A point is a backtest of its own (its id, its run folder
under ``runs/backtests/``, its log, its result), reported through the same ``on_backtest``
callback as any backtest; the sweep's own state goes through ``on_sweep(sweep_id, fields)``
with fields status ("queued"|"running"|"completed"|"failed"|"cancelled"), started_at,
ended_at, error. A sweep completes once every point has ended; it failed when none
completed; it is cancelled when its user cancelled it (finished points keep their results).

Where and how the points' processes start is the executor's: its default runs each point as
its own prepare/run/release; an executor may run the points of one trust domain faster.
"""
from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .backtests import (CANCELLED, NEVER_RAN, SERVER_STOPPED, BacktestCallback, BacktestJob, backtest_request,
                        ended_fields, limits_text)
from .executor import Executor, Exit, RunRequest
from .folders import RunFolder, check_id
from .logs import LogSink
from .process import STOPPED, RunStop

SweepCallback = Callable[[str, dict[str, Any]], None]
NO_POINT = "no point completed: every one failed (each point's error says why)"


@dataclass(frozen=True)
class SweepJob:
    """A sweep to run: its points, each a whole backtest job (all of one version, one user)."""

    sweep_id: str
    points: tuple[BacktestJob, ...]


@dataclass
class _Sweep:
    job: SweepJob
    stop: RunStop = field(default_factory=RunStop)
    stop_reason: Optional[str] = None  # CANCELLED, or why the server stopped it
    skipped: set[str] = field(default_factory=set)  # run ids of points cancelled before they started
    started: set[str] = field(default_factory=set)  # run ids of points that began (their folder is made)
    logs: dict[str, LogSink] = field(default_factory=dict)
    finished: int = 0  # points ended (the long-poll of /sweep/status waits for this to change)
    completed: int = 0  # points that completed
    running: bool = False  # the worker took it from the queue
    done: bool = False
    reported: bool = False  # its own end is stored


class Sweeps:
    """The sweep queue: one sweep runs at a time, ``parallel`` of its points at once."""

    def __init__(self, runs_dir: Path, executor: Executor, report_backtest: BacktestCallback,
                 report_sweep: SweepCallback, *, parallel: int, log_max_bytes: int, network: bool) -> None:
        self.folder = Path(runs_dir) / "backtests"  # a point's folder is a backtest's
        self.executor = executor
        self.report_backtest = report_backtest
        self.report_sweep = report_sweep
        self.parallel = max(1, parallel)
        self.log_max_bytes = log_max_bytes
        self.network = network
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._sweeps: dict[str, _Sweep] = {}
        self._points: dict[str, str] = {}  # backtest id -> sweep id, while its sweep is known
        self._worker: Optional[threading.Thread] = None

    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="sweep-runner", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Ask every sweep to stop (running points end, the rest never run) and the worker to end."""
        with self._lock:
            sweeps = [s for s in self._sweeps.values() if not s.done]
        for sweep in sweeps:
            sweep.stop_reason = SERVER_STOPPED
            sweep.stop.set()
        self._queue.put(None)

    def join(self, timeout: float) -> None:
        """Wait for the worker; what never ran is failed with the reason."""
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None
        with self._lock:
            leftovers = [s for s in self._sweeps.values() if not s.done]
        for sweep in leftovers:
            self._close(sweep, ended=lambda job: {"status": "failed", "error": NEVER_RAN})

    def submit(self, job: SweepJob) -> None:
        check_id("sweep id", job.sweep_id)
        for point in job.points:
            check_id("backtest id", point.backtest_id)
        with self._lock:
            if job.sweep_id in self._sweeps:
                raise ValueError(f"sweep {job.sweep_id!r} was already submitted")
            self._sweeps[job.sweep_id] = _Sweep(job)
            self._points.update((point.backtest_id, job.sweep_id) for point in job.points)
        self._queue.put(job.sweep_id)

    def cancel(self, sweep_id: str) -> bool:
        """Stop the sweep: running points end cancelled, the rest never start (a sweep still waiting
        for its turn ends at once). False if unknown or over."""
        with self._lock:
            sweep = self._sweeps.get(sweep_id)
            if sweep is None or sweep.done:
                return False
            sweep.stop_reason = CANCELLED
            sweep.stop.set()
            waiting = not sweep.running
        if waiting:
            self._close(sweep, ended=lambda job: self._never_ran(sweep))
        return True

    def cancel_point(self, backtest_id: str) -> Optional[str]:
        """Skip one point of a sweep: "skipped" when it had not started, "running" when it has
        (a point is stopped only with its whole sweep), None when no sweep here holds it."""
        with self._lock:
            sweep = self._sweeps.get(self._points.get(backtest_id, ""))
        if sweep is None or sweep.done:
            return None
        run_id = f"backtest-{backtest_id}"
        if run_id in sweep.started:
            return "running"
        sweep.skipped.add(run_id)
        return "skipped"

    def finished(self, sweep_id: str) -> Optional[int]:
        """Points of a sweep this server runs that have ended (None: it runs no such sweep now, or its
        end is stored)."""
        sweep = self._sweeps.get(sweep_id)
        return None if sweep is None or sweep.reported else sweep.finished

    # -- one sweep ------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            sweep_id = self._queue.get()
            if sweep_id is None:
                return
            with self._lock:
                sweep = self._sweeps.get(sweep_id)
                if sweep is not None and not sweep.done:
                    sweep.running = True
            if sweep is None:
                continue
            if not sweep.running:  # cancelled while it waited: closed then, forgotten now
                self._forget(sweep)
                continue
            try:
                self._run(sweep)
            except Exception:  # never lose the worker; what is left of the sweep fails with the reason
                traceback.print_exc()
                error = "internal error in the runner: " + traceback.format_exc().strip().splitlines()[-1]
                self._close(sweep, ended=lambda job: {"status": "failed", "error": error})
            finally:
                self._forget(sweep)

    def _run(self, sweep: _Sweep) -> None:
        jobs = {f"backtest-{job.backtest_id}": job for job in sweep.job.points}
        requests = [backtest_request(job, self.folder / job.backtest_id, self.network, point=True)
                    for job in jobs.values()]
        if sweep.stop.is_set():
            self._close(sweep, ended=lambda job: self._never_ran(sweep))
            return
        self.report_sweep(sweep.job.sweep_id, {"status": "running", "started_at": time.time()})

        def log_for(request: RunRequest) -> LogSink:
            job = jobs[request.run_id]
            folder = RunFolder(request.folder).reset()
            log = LogSink(folder.log, self.log_max_bytes)
            sweep.logs[request.run_id] = log
            sweep.started.add(request.run_id)
            log.note(f"backtest {job.backtest_id}, a point of sweep {sweep.job.sweep_id} "
                     f"({_shown(job.parameters)}): {limits_text(job.limits, True)}"
                     f"{'' if self.network else ', no network'}")
            return log

        def on_exit(request: RunRequest, end: Exit) -> None:
            self._point_ended(sweep, jobs[request.run_id], request, end)

        def on_start(request: RunRequest, pid: Optional[int], started: float) -> None:
            # a point is "running" once its process is, as a backtest is (backtests.py)
            self.report_backtest(jobs[request.run_id].backtest_id, {"status": "running", "started_at": started})

        self.executor.run_points(requests, log_for, sweep.stop, on_start, on_exit,
                                 parallel=self.parallel, stopped=lambda request: request.run_id in sweep.skipped)
        self._close(sweep, ended=lambda job: self._never_ran(sweep))

    def _point_ended(self, sweep: _Sweep, job: BacktestJob, request: RunRequest, end: Exit) -> None:
        """One point's end, as a backtest's end is reported; a failure here fails the point only."""
        try:
            log = sweep.logs.pop(request.run_id, None)
            if request.run_id in sweep.skipped:
                stopped: Optional[str] = CANCELLED
            elif sweep.stop.is_set():
                stopped = sweep.stop_reason or CANCELLED
                if stopped == SERVER_STOPPED and request.run_id not in sweep.started:
                    stopped = NEVER_RAN
            else:
                stopped = None
            if log is None:  # it never started: nothing to read, no log to write
                reason = stopped if end.reason == STOPPED else (end.reason or stopped or NEVER_RAN)
                fields = {"status": "cancelled" if reason == CANCELLED else "failed", "exit_code": end.code,
                          "error": reason}
            else:
                fields = ended_fields(end, log, stopped=stopped, network=self.network)
        except Exception:
            traceback.print_exc()
            fields = {"status": "failed", "error": "internal error in the runner: "
                      + traceback.format_exc().strip().splitlines()[-1]}
        fields.setdefault("ended_at", time.time())
        self.report_backtest(job.backtest_id, fields)
        with self._lock:
            sweep.finished += 1
            sweep.completed += fields.get("status") == "completed"
            self._points.pop(job.backtest_id, None)

    def _never_ran(self, sweep: _Sweep) -> dict[str, Any]:
        reason = sweep.stop_reason if sweep.stop_reason == CANCELLED else NEVER_RAN
        return {"status": "cancelled" if reason == CANCELLED else "failed", "error": reason}

    def _close(self, sweep: _Sweep, ended: Callable[[BacktestJob], dict[str, Any]]) -> None:
        """The sweep is over: points that never reported an end get ``ended(job)``, then the sweep its state."""
        with self._lock:
            if sweep.done:
                return
            sweep.done = True
            left = [job for job in sweep.job.points if job.backtest_id in self._points]
        now = time.time()
        for job in left:
            self.report_backtest(job.backtest_id, {**ended(job), "ended_at": now})
        with self._lock:
            sweep.finished = len(sweep.job.points)
        self.report_sweep(sweep.job.sweep_id, self._outcome(sweep, now))
        sweep.reported = True

    @staticmethod
    def _outcome(sweep: _Sweep, now: float) -> dict[str, Any]:
        if sweep.stop_reason == CANCELLED:
            return {"status": "cancelled", "ended_at": now, "error": CANCELLED}
        if sweep.stop_reason is not None:
            return {"status": "failed", "ended_at": now, "error": sweep.stop_reason}
        if not sweep.completed:
            return {"status": "failed", "ended_at": now, "error": NO_POINT}
        return {"status": "completed", "ended_at": now, "error": None}

    def _forget(self, sweep: _Sweep) -> None:
        with self._lock:
            self._sweeps.pop(sweep.job.sweep_id, None)
            for job in sweep.job.points:
                self._points.pop(job.backtest_id, None)


def _shown(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in parameters.items()) or "no parameters"
