"""Backtests: a bounded queue, a pool of worker threads, and each backtest's statuses and result.

Statuses go out through ``on_backtest(backtest_id, fields)``; fields is a dict with any of
status ("queued"|"running"|"building"|"completed"|"failed"|"cancelled"; "building" while its
Python environment is built, its step in ``Backtests.progress``; "running" once its process has
started and its pid record is written, never before: until then it is "queued"), started_at (when
its process started), ended_at (epoch float), exit_code (int|None), error (str|None: the reason
for failed/cancelled), result (dict|None: {"metrics": {...}, "account_values": [{"time": t,
"value": v}, ...], "trades": [...], "initial_account_value", "final_account_value", "start_time",
"stop_time", "symbols", "quote_asset", "exchange"}).
"""
from __future__ import annotations

import base64
import json
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .building import BUILD_LOG, BuildLog
from .executor import Executor, Exit, Prepared, RunFailed, RunLimits, RunRequest
from .folders import LOG_NAME, RunFolder, check_id, read_json_report
from .logs import LogSink, failure_reason, with_network_hint
from .prepare import platform_vars
from .process import STOPPED, RunStop

BacktestCallback = Callable[[str, dict[str, Any]], None]
# A run's secret files (RunRequest.secret_files), asked for when the run starts so that they are current.
SecretFiles = Callable[[], dict[str, bytes]]
CANCELLED = "cancelled by the user"
SERVER_STOPPED = "stopped: the server stopped while this backtest ran"
NEVER_RAN = "the server stopped before this backtest ran"
NO_RESULT = ("produced no backtest result (the script never ran a Blankly backtest: "
             "does it create a blankly.Strategy and call start() or backtest()?)")


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
    secrets: SecretFiles = field(default=dict, repr=False, compare=False)
    parameters: dict[str, Any] = field(default_factory=dict)  # overrides of the parameters cell (BLANKLY_PARAMETERS)
    adopt: str = ""  # the executor's handle of this backtest's job a previous server left running


@dataclass
class _Backtest:
    job: BacktestJob
    cancelled: RunStop = field(default_factory=RunStop)
    stop_reason: Optional[str] = None
    started: bool = False  # a worker took it from the queue
    done: bool = False
    progress: Optional[str] = None  # the step of its environment's build, while one is built


class Backtests:
    """The backtest queue: ``max_workers`` run at once, the rest wait in order."""

    def __init__(self, runs_dir: Path, executor: Executor, report: BacktestCallback, *, max_workers: int,
                 log_max_bytes: int, network: bool) -> None:
        self.folder = Path(runs_dir) / "backtests"
        self.executor = executor
        self.report = report
        self.max_workers = max_workers
        self.log_max_bytes = log_max_bytes
        self.network = network
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._runs: dict[str, _Backtest] = {}
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.max_workers):
            worker = threading.Thread(target=self._work, name=f"backtest-worker-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self, detach: bool = False) -> None:
        """Ask every backtest to stop and every worker to end (join() waits for them). With
        ``detach`` (an executor whose runs outlive the server) a started backtest is left running
        and reports nothing more: the next server adopts it."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            if not run.done:
                run.stop_reason = SERVER_STOPPED if run.started else NEVER_RAN
                run.done = run.done or (detach and run.started)
                run.cancelled.set()
        for _ in self._workers:
            self._queue.put(None)

    def join(self, timeout: float) -> None:
        """Wait for the workers; backtests that never ran are failed with the reason."""
        for worker in self._workers:
            worker.join(timeout)
        self._workers = []
        with self._lock:
            leftovers = [r for r in self._runs.values() if not r.done]
        for run in leftovers:
            self._finish(run, {"status": "failed", "error": NEVER_RAN})

    def submit(self, job: BacktestJob) -> None:
        check_id("backtest id", job.backtest_id)
        with self._lock:
            if job.backtest_id in self._runs:
                raise ValueError(f"backtest {job.backtest_id!r} was already submitted")
            self._runs[job.backtest_id] = _Backtest(job)
        self.report(job.backtest_id, {"status": "queued"})
        self._queue.put(job.backtest_id)

    def queued(self) -> int:
        return self._queue.qsize()

    def cancel(self, backtest_id: str) -> bool:
        with self._lock:
            run = self._runs.get(backtest_id)
        if run is None or run.done:
            return False
        # A queued run is skipped by its worker; a running one is stopped by its watcher.
        run.stop_reason = CANCELLED
        run.cancelled.set()
        return True

    def log_path(self, backtest_id: str) -> Path:
        return self.folder / check_id("backtest id", backtest_id) / LOG_NAME

    def progress(self, backtest_id: str) -> Optional[str]:
        """What the build of the backtest's environment is doing (None when none is being built)."""
        with self._lock:
            run = self._runs.get(backtest_id)
        return run.progress if run is not None else None

    # -- one backtest ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            backtest_id = self._queue.get()
            if backtest_id is None:
                return
            with self._lock:
                run = self._runs.get(backtest_id)
            if run is None:
                continue
            try:
                self._run(run)
            except Exception:  # never lose a worker; the backtest is failed with the reason
                traceback.print_exc()
                self._finish(run, {"status": "failed", "error": "internal error in the runner: "
                                   + traceback.format_exc().strip().splitlines()[-1]})
            finally:
                with self._lock:
                    self._runs.pop(backtest_id, None)

    def _finish(self, run: _Backtest, fields: dict[str, Any]) -> None:
        if run.done:
            return
        run.done = True
        fields.setdefault("ended_at", time.time())
        self.report(run.job.backtest_id, fields)

    def _request(self, job: BacktestJob, folder: RunFolder) -> RunRequest:
        return backtest_request(job, folder.root, self.network)

    def _run(self, run: _Backtest) -> None:
        job = run.job
        run.started = True
        if run.cancelled.is_set():
            self._finish(run, {"status": self._stop_status(run), "error": run.stop_reason})
            return
        folder = RunFolder(self.folder / job.backtest_id).reset()
        log = LogSink(folder.log, self.log_max_bytes)
        prepared: Optional[Prepared] = None
        keep_report = True
        build = BuildLog(folder.root / BUILD_LOG, log, lambda step: self._building(run, step))
        try:
            try:
                prepared = self.executor.prepare(self._request(job, folder), build, run.cancelled)
            finally:
                build.done()
            if run.progress is not None:
                run.progress = None
                log.note(f"built the environment in {build.seconds:.0f} s")
            log.note(f"backtest {job.backtest_id}: python {prepared.python_version}, "
                     f"{limits_text(job.limits, True)}{'' if self.network else ', no network'}")
            # "running" means a process: reported once the executor has started and recorded it (a
            # warm worker may still be importing, an unpacked copy waits for its sandbox until then).
            end = self.executor.run(prepared, log, run.cancelled, lambda pid, started: self.report(
                job.backtest_id, {"status": "running", "started_at": started}))
            keep_report = not (end.reason or "").startswith("stopped: exceeded the plan's disk")
        except RunFailed as exc:
            reason = run.stop_reason if run.cancelled.is_set() else str(exc)
            if prepared is None and build.started is not None and not run.cancelled.is_set():
                build.show()  # a failed build's output is the model's log's to show
            log.note(reason or "stopped")
            status = self._stop_status(run) if run.cancelled.is_set() else "failed"
            self._finish(run, {"status": status, "error": reason, "exit_code": None})
            return
        finally:
            if prepared is not None:
                self.executor.release(prepared, keep_report=keep_report)
        self._conclude(run, end, log)

    def _building(self, run: _Backtest, step: str) -> None:
        first = run.progress is None
        run.progress = step
        if first:
            self.report(run.job.backtest_id, {"status": "building"})

    def _conclude(self, run: _Backtest, end: Exit, log: LogSink) -> None:
        stopped = (run.stop_reason or CANCELLED) if run.cancelled.is_set() else None
        self._finish(run, ended_fields(end, log, stopped=stopped, network=self.network))

    @staticmethod
    def _stop_status(run: _Backtest) -> str:
        return stop_status(run.stop_reason)


def stop_status(reason: Optional[str]) -> str:
    """A backtest stopped for ``reason``: cancelled by its user, or failed (the server stopped)."""
    return "cancelled" if reason == CANCELLED else "failed"


def ended_fields(end: Exit, log: LogSink, *, stopped: Optional[str], network: bool) -> dict[str, Any]:
    """What a backtest whose process ended reports; ``stopped`` is why it was asked to stop (None: it was not)."""
    code, reason = end.code, end.reason
    result = read_json_report(end.reports, "backtest_result.json")
    if reason == STOPPED or (reason is None and stopped is not None):
        reason = stopped or CANCELLED
        log.note(reason)
        return {"status": stop_status(reason), "exit_code": code, "error": reason}
    if reason is not None:
        log.note(reason)
        return {"status": "failed", "exit_code": code, "error": reason}
    if code != 0:
        error = with_network_hint(failure_reason(log.tail(16000), code), network)
        return {"status": "failed", "exit_code": code, "error": error}
    if result is None:
        return {"status": "failed", "exit_code": code, "error": NO_RESULT}
    result.pop("blankly_backtest_id", None)
    return {"status": "completed", "exit_code": code, "error": None, "result": result}


def backtest_request(job: BacktestJob, folder: Path, network: bool, point: bool = False) -> RunRequest:
    """The executor's request for one backtest: the platform's variables, its arguments and parameters.
    A sweep's ``point`` prints its metrics without Blankly's history tables (the hook's metrics_text)."""
    env = platform_vars(project_id=job.project_id, model_id=job.model_id, version_id=job.version_id,
                        user_id=job.user_id, model_type=job.model_type)
    env.update({
        "BACKTESTING": "1",
        "BACKTESTING_ID": job.backtest_id,
        "BACKTESTING_ARGS": base64.b64encode(json.dumps(job.backtest_args or {}).encode()).decode(),
    })
    if job.parameters:
        env["BLANKLY_PARAMETERS"] = base64.b64encode(json.dumps(job.parameters).encode()).decode()
    if point:
        env["BLANKLY_MAGICS_SWEEP_POINT"] = "1"
    return RunRequest(run_id=f"backtest-{job.backtest_id}", kind="backtest", folder=folder,
                      zip_path=job.zip_path, version_id=job.version_id, python_version=job.python_version,
                      env=env, limits=job.limits, deadline=True, network=network,
                      secret_files=job.secrets(), adopt=job.adopt)


def limits_text(limits: RunLimits, deadline: bool) -> str:
    """A plan's limits as the run's log states them."""
    text = f"limits {limits.timeout:g} s, " if deadline else "limits "
    return text + f"{limits.ram} MB memory, {limits.disk} MB disk, {limits.processes} processes"
