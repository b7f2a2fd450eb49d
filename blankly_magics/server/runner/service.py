"""``Runner``: every run the server starts, bookkept; where their processes start is the executor's.

The runner knows nothing of SQLite or HTTP: the app gives it jobs and it
reports every change through the two callbacks it was given (see backtests.py
and live.py for their fields). Its executor (executor.py) starts the processes:
``LocalExecutor`` by default, confined by bubblewrap when ``bwrap`` is given;
``RayExecutor`` (ray_executor.py) for a Ray cluster.

With an executor whose runs outlive the server (``detaches``), ``shutdown``
leaves them running and silent, and ``start`` keeps what the executor hands back
as adoptable: the app adopts a run by submitting its job again with the handle
(``adoptable(kind, id)`` -> ``BacktestJob.adopt`` / ``LiveJob.adopt``), then
``discard_unadopted()`` ends the rest.
"""
from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from .backtests import SERVER_STOPPED, BacktestCallback, BacktestJob, Backtests
from .executor import Executor
from .folders import check_id
from .live import LiveCallback, LiveJob, LiveModels
from .local import LocalExecutor
from .reports import PAGE_BYTES, ReportPage, read_report_page
from .sandbox import find_bwrap
from .sweeps import SweepCallback, SweepJob, Sweeps


class Runner:
    """Owns every run the server starts: the backtest queue, the sweeps and the live models."""

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
        executor: Optional[Executor] = None,
        network: bool = True,
        on_sweep: Optional[SweepCallback] = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.on_backtest = on_backtest
        self.on_live = on_live
        self.on_sweep = on_sweep
        self.grace = grace
        self.executor = executor or LocalExecutor(self.data_dir, find_bwrap(), grace=grace)
        runs = self.data_dir / "runs"
        workers = max(1, max_workers or os.cpu_count() or 1)
        self.backtests = Backtests(runs, self.executor, self._report_backtest, max_workers=workers,
                                   log_max_bytes=log_max_bytes, network=network)
        self.sweeps = Sweeps(runs, self.executor, self._report_backtest, self._report_sweep, parallel=workers,
                             log_max_bytes=log_max_bytes, network=network)
        self.live = LiveModels(runs, self.executor, on_live, max_restarts=max_restarts,
                               restart_backoff=restart_backoff, grace=grace, log_max_bytes=log_max_bytes,
                               stable_after=stable_after, network=network)
        self._started = False
        self._closing = False
        self._adoptable: dict[tuple[str, str], str] = {}

    @property
    def isolation(self) -> str:
        return self.executor.isolation

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the workers; close the runs a previous server left behind.

        Leftovers are reported through the callbacks before this returns: a
        backtest as ``failed``, a live model as ``stopped``, each with the reason.
        """
        if self._started:
            return
        self._started, self._closing = True, False
        for leftover in self.executor.start():
            kind, ident = leftover.get("kind"), leftover.get("id")
            if leftover.get("handle") and kind and ident:
                self._adoptable[(kind, ident)] = leftover["handle"]
            elif kind == "backtest" and ident:
                self._report_backtest(ident, {"status": "failed", "ended_at": time.time(), "exit_code": None,
                                              "error": SERVER_STOPPED})
            elif kind == "live" and ident:
                self.live.call_on_live(ident, {
                    "state": "stopped", "pid": None, "since": time.time(),
                    "error": "the server restarted; the model's previous process was stopped",
                })
        self.backtests.start()
        self.sweeps.start()

    def adoptable(self, kind: str, ident: str) -> str:
        """The handle of a run the previous server left running (``kind`` "backtest" or "live"),
        taken: the caller adopts it. "" when there is none."""
        return self._adoptable.pop((kind, ident), "")

    def adoptable_ids(self, kind: str) -> list[str]:
        return [ident for (k, ident) in self._adoptable if k == kind]

    def discard_unadopted(self) -> None:
        """End the runs the previous server left that were not adopted."""
        for (kind, ident), handle in list(self._adoptable.items()):
            del self._adoptable[(kind, ident)]
            try:
                self.executor.discard(handle)
            except Exception:
                traceback.print_exc()

    def shutdown(self, stop_live: bool = True) -> None:
        """Stop the workers and every run (live ones too when ``stop_live``); with an executor
        whose runs outlive the server, leave every started run running instead."""
        self._closing = True
        if self.executor.detaches:
            self.executor.detach()  # from here each run returns at once, its process left running
            self.backtests.stop(detach=True)
            self.live.detach_all()
        else:
            self.backtests.stop()  # every run is asked to stop at once, then waited for
            if stop_live:
                self.live.stop_all()
        self.sweeps.stop()  # a sweep does not outlive its server, whatever the executor
        self.backtests.join(self.grace + 10)
        self.sweeps.join(self.grace + 10)
        self.executor.close()
        self._started = False

    def python_versions(self) -> list[str]:
        """The X.Y versions this machine can run models with."""
        return self.executor.python_versions()

    def _report_backtest(self, backtest_id: str, fields: dict[str, Any]) -> None:
        try:
            self.on_backtest(backtest_id, fields)
        except Exception:  # the app's bug must not kill a worker or leave a process behind
            traceback.print_exc()

    def _report_sweep(self, sweep_id: str, fields: dict[str, Any]) -> None:
        try:
            if self.on_sweep is not None:
                self.on_sweep(sweep_id, fields)
        except Exception:
            traceback.print_exc()

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("the runner is shutting down")

    # -- backtests ---------------------------------------------------------------

    def submit_backtest(self, job: BacktestJob) -> None:
        """Queue a backtest; returns at once, reports 'queued' then progress."""
        self._check_open()
        self.backtests.submit(job)

    def queued(self) -> int:
        """Backtests waiting for a worker (for the app's queue bound)."""
        return self.backtests.queued()

    def cancel_backtest(self, backtest_id: str) -> bool:
        return self.backtests.cancel(backtest_id)

    def backtest_log(self, backtest_id: str) -> Path:
        """Path of the backtest's combined stdout/stderr log (may not exist yet)."""
        return self.backtests.log_path(backtest_id)

    # -- sweeps ------------------------------------------------------------------

    def submit_sweep(self, job: SweepJob) -> None:
        """Queue a sweep; returns at once. Its points report as backtests, the sweep through on_sweep."""
        self._check_open()
        self.sweeps.submit(job)

    def cancel_sweep(self, sweep_id: str) -> bool:
        return self.sweeps.cancel(sweep_id)

    def cancel_point(self, backtest_id: str) -> Optional[str]:
        """Skip a sweep's point that has not started ("skipped"); "running" if it has; None if no sweep holds it."""
        return self.sweeps.cancel_point(backtest_id)

    def sweep_finished(self, sweep_id: str) -> Optional[int]:
        """How many points of a sweep running here have ended (None: none such runs here now, or its
        end is stored)."""
        return self.sweeps.finished(sweep_id)

    # -- live models -------------------------------------------------------------

    def deploy(self, job: LiveJob) -> None:
        """Start a live model, replacing (stop then start) any running one of the model."""
        self._check_open()
        self.live.deploy(job)

    def kill(self, model_id: str) -> bool:
        """Stop a live model (terminate, kill after a grace period). False if none ran."""
        return self.live.kill(model_id)

    def live_log(self, model_id: str) -> Path:
        """Path of the live model's current log."""
        return self.live.log_path(model_id)

    def live_status(self, model_id: str) -> Optional[dict[str, Any]]:
        return self.live.status(model_id)

    def live_report(self, model_id: str, name: str, offset: int = 0, limit: int = PAGE_BYTES, *,
                    tail: bool = False) -> ReportPage:
        """A page of a report file of the model's live run (kept after it stops, until its next deploy).
        The one place the server reads a running run's reports: another executor answers it its own way."""
        return read_report_page(self.live.folder / check_id("model id", model_id) / "report", name, offset, limit,
                                tail=tail)

    def progress(self, kind: str, run_id: str) -> Optional[str]:
        """The step a "building" run's environment build is at (``kind``: "backtest" or "live")."""
        return (self.backtests if kind == "backtest" else self.live).progress(run_id)
