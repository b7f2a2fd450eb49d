"""Handing stored versions to the runner: the backtest queue and live models."""
from __future__ import annotations

import functools
import logging
import time
from typing import Any

import anyio.to_thread

from .config import plan_limits
from .keystore import run_secret_files
from .web import ApiError
from .runner import BacktestJob, LiveJob, SweepJob
from .state import Server
from .store import Backtest, Model, Sweep, Version

RETRY_AFTER = "5"

log = logging.getLogger("blankly_magics.server")


def check_queue(server: Server) -> None:
    if server.store.count_queued() >= server.config.max_queue:
        raise ApiError(
            429,
            f"{server.config.max_queue} backtests are already waiting; try again in a moment",
            {"Retry-After": RETRY_AFTER},
        )


def _job_fields(
    server: Server, version: Version, project_id: str, plan: dict[str, Any], user_id: str
) -> dict[str, Any]:
    """What every runner job says about the version it runs, its limits and the owner's secret files
    (the stored exchange keys, read when the run starts)."""
    zip_path = server.store.version_path(version)
    working_directory = str((version.manifest or {}).get("working_directory") or ".")
    return {
        "model_id": version.model_id,
        "version_id": version.id,
        "project_id": project_id,
        "zip_path": zip_path,
        "python_version": version.python_version,
        "model_type": version.model_type,
        "limits": plan_limits(plan),
        "user_id": user_id,
        "secrets": functools.partial(run_secret_files, server.keys, user_id, zip_path, working_directory),
    }


def live_job(
    server: Server, model: Model, version: Version, plan_name: str, user_id: str, adopt: str = ""
) -> LiveJob:
    plan = server.config.plans["live"][plan_name]
    return LiveJob(
        **_job_fields(server, version, model.project_id, plan, user_id), schedule=version.schedule,
        adopt=adopt,
    )


def backtest_job(server: Server, backtest: Backtest, version: Version, plan: dict, user_id: str,
                 adopt: str = "") -> BacktestJob:
    return BacktestJob(
        backtest_id=backtest.id,
        backtest_args=backtest.args,
        parameters=backtest.parameters,
        adopt=adopt,
        **_job_fields(server, version, backtest.project_id, plan, user_id),
    )


def submit_backtest(
    server: Server, backtest: Backtest, version: Version, plan: dict, user_id: str, adopt: str = ""
) -> None:
    job = backtest_job(server, backtest, version, plan, user_id, adopt)
    try:
        server.runner.submit_backtest(job)
    except Exception as exc:
        log.exception("could not queue backtest %s", backtest.id)
        reason = f"the backtest could not be queued: {exc}"
        server.store.update_backtest(
            backtest.id, {"status": "failed", "error": reason, "ended_at": time.time()}
        )
        raise ApiError(503, reason) from None


def submit_sweep(
    server: Server, sweep: Sweep, points: list[Backtest], version: Version, plan: dict, user_id: str
) -> None:
    job = SweepJob(sweep.id, tuple(backtest_job(server, point, version, plan, user_id) for point in points))
    try:
        server.runner.submit_sweep(job)
    except Exception as exc:
        log.exception("could not queue sweep %s", sweep.id)
        reason = f"the sweep could not be queued: {exc}"
        now = time.time()
        for point in points:
            server.store.update_backtest(point.id, {"status": "failed", "error": reason, "ended_at": now})
        server.store.update_sweep(sweep.id, {"status": "failed", "error": reason, "ended_at": now})
        raise ApiError(503, reason) from None


def check_sweeps(server: Server) -> None:
    from .sweep_checks import MAX_WAITING

    if len(server.store.unfinished_sweeps()) >= MAX_WAITING:
        raise ApiError(429, f"{MAX_WAITING} sweeps are already queued or running; try again when one has finished",
                       {"Retry-After": RETRY_AFTER})


async def start_live(server: Server, job: LiveJob) -> None:
    try:
        await anyio.to_thread.run_sync(server.runner.deploy, job)
    except Exception as exc:
        log.exception("could not start model %s", job.model_id)
        reason = f"the model is stored but could not be started: {exc}"
        server.store.update_deployment(
            job.model_id, {"state": "stopped", "desired": "stopped", "error": reason}
        )
        raise ApiError(503, reason) from None


def accepted(model: Model, version: Version, timestamp: float, **extra: Any) -> dict[str, Any]:
    return {
        "status": "success",
        "timestamp": timestamp,
        "modelId": model.id,
        "versionId": version.id,
        "projectId": model.project_id,
        **extra,
    }
