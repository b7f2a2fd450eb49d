"""Running uploaded models: a bounded backtest queue and a live-process supervisor.

INTERFACE STUB (to be filled in by the runner work, issue 4). The app codes
against exactly these names; the runner knows nothing of SQLite or HTTP and
reports every change through the callbacks it is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

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


class Runner:
    """Owns every child process the server starts."""

    def __init__(
        self,
        data_dir: Path,
        on_backtest: BacktestCallback,
        on_live: LiveCallback,
        max_workers: Optional[int] = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.on_backtest = on_backtest
        self.on_live = on_live
        self.max_workers = max_workers

    def start(self) -> None:
        """Start worker threads; kill processes a previous server left behind."""
        raise NotImplementedError

    def shutdown(self, stop_live: bool = True) -> None:
        """Stop workers; terminate every child (live ones too when stop_live)."""
        raise NotImplementedError

    def python_versions(self) -> list[str]:
        """The X.Y versions this machine can run models with."""
        raise NotImplementedError

    def submit_backtest(self, job: BacktestJob) -> None:
        """Queue a backtest; returns at once, reports 'queued' then progress."""
        raise NotImplementedError

    def cancel_backtest(self, backtest_id: str) -> bool:
        raise NotImplementedError

    def backtest_log(self, backtest_id: str) -> Path:
        """Path of the backtest's combined stdout/stderr log (may not exist yet)."""
        raise NotImplementedError

    def deploy(self, job: LiveJob) -> None:
        """Start a live model, replacing (stop then start) any running one of the model."""
        raise NotImplementedError

    def kill(self, model_id: str) -> bool:
        """Stop a live model (terminate, kill after a grace period). False if none ran."""
        raise NotImplementedError

    def live_log(self, model_id: str) -> Path:
        """Path of the live model's current log."""
        raise NotImplementedError

    def live_status(self, model_id: str) -> Optional[dict[str, Any]]:
        raise NotImplementedError
