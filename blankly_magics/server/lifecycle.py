"""Startup and shutdown: open the store, sweep what a crash left, resume live models.

With the Ray executor the runs of the previous server may still be running on
the cluster: its backtests and live models are adopted (watched again, their
logs rebuilt from the cluster's, stoppable as before) rather than failed or
started anew; what nobody adopts (a model stopped or deleted meanwhile) is ended.
"""
from __future__ import annotations

import logging
import shutil
import time
from typing import Any, Callable, Optional

from . import uploads
from .config import ServerConfig
from .jobs import live_job, submit_backtest
from .keystore import open_keys
from .longpoll import StatusWaits
from .runner import Executor, LocalExecutor, Runner
from .state import Server
from .store import TMP_DIR, VERSIONS_DIR, Deployment, Store, private_dir
from .tokens import IdTokens, load_signing_key

log = logging.getLogger("blankly_magics.server")


def sweep_leftovers(store: Store) -> None:
    """Remove what a killed process left half-done: temp uploads, zips no row points to."""
    data_dir = store.data_dir
    for path in (data_dir / TMP_DIR).iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    known = store.version_zip_names()
    for path in (data_dir / VERSIONS_DIR).iterdir():
        if f"{VERSIONS_DIR}/{path.name}" not in known:
            log.warning("removing %s: no version records it (left by an interrupted upload)", path)
            path.unlink(missing_ok=True)


def _runner_callbacks(store: Store, waits: StatusWaits) -> tuple[Callable, Callable, Callable]:
    # Called from the runner's threads; a failure here must not kill them.
    def on_backtest(backtest_id: str, fields: dict[str, Any]) -> None:
        try:
            store.update_backtest(backtest_id, fields)
        except Exception:
            log.exception("could not record backtest %s progress", backtest_id)
        waits.changed(backtest_id)  # long polls of its status answer now

    def on_live(model_id: str, fields: dict[str, Any]) -> None:
        try:
            store.update_deployment(model_id, fields)
        except Exception:
            log.exception("could not record model %s state", model_id)

    def on_sweep(sweep_id: str, fields: dict[str, Any]) -> None:
        try:
            store.update_sweep(sweep_id, fields)
        except Exception:
            log.exception("could not record sweep %s progress", sweep_id)

    return on_backtest, on_live, on_sweep


def resume_deployments(server: Server) -> None:
    """Start again the models that were meant to run when the last process stopped."""
    store = server.store
    for dep in store.deployments():
        if dep.desired != "running":
            if dep.state in ("starting", "building", "running"):
                store.update_deployment(dep.model_id, {"state": "stopped", "pid": None})
            continue
        reason = _resume(server, dep)
        if reason is not None:
            store.update_deployment(
                dep.model_id,
                {"state": "stopped", "desired": "stopped", "pid": None,
                 "error": f"not restarted after the server restarted: {reason}"},
            )


def _resume(server: Server, dep: Deployment) -> Optional[str]:
    """Deploy a model's recorded version again; None, or the reason it cannot be."""
    store = server.store
    model = store.model_by_id(dep.model_id)
    version = store.get_version(dep.model_id, dep.version_id) if model else None
    if model is None or version is None or not store.version_path(version).exists():
        return "its version is missing"
    if version.python_version not in server.runner.python_versions():
        return f"Python {version.python_version} is not available any more"
    plans = server.config.plans["live"]
    plan_name = dep.plan if dep.plan in plans else next(iter(plans))  # the plan may be gone
    store.update_deployment(
        dep.model_id, {"state": "starting", "since": time.time(), "pid": None, "error": None}
    )
    owner = store.project_owner(model.project_id)
    adopt = server.runner.adoptable("live", dep.model_id) if version.id == dep.version_id else ""
    try:
        server.runner.deploy(live_job(server, model, version, plan_name, owner, adopt))
    except Exception as exc:
        return f"it could not be started: {exc}"
    return None


def _bwrap(config: ServerConfig) -> Optional[str]:
    """bubblewrap's path when runs are confined (detected here when the command line did not)."""
    if config.isolation == "auto":
        from .isolation import detect

        isolation = detect("auto", config.data_dir)
        log.log(logging.WARNING if isolation.mode == "none" else logging.INFO, isolation.describe())
        return isolation.bwrap
    return config.bwrap if config.isolation == "bubblewrap" else None


def _executor(config: ServerConfig) -> tuple[Executor, Optional[int]]:
    """Where runs go (``--executor``), and how many backtests run at once unless told."""
    if config.executor == "ray":
        from .runner.ray_executor import RayExecutor

        ray = RayExecutor(config.data_dir, config.ray_address, schedule_wait=config.ray_schedule_wait,
                          secrets_listen=config.ray_secrets_listen, secrets_url=config.ray_secrets_url)
        return ray, config.max_workers or max(1, ray.cpus())
    return LocalExecutor(config.data_dir, _bwrap(config), warm_workers=config.warm_workers), config.max_workers


def open_server(config: ServerConfig) -> Server:
    """Open the store, clean up after a crash, start the runner and resume live models."""
    store = Store(config.data_dir, background_checkpoints=True)
    try:
        private_dir(config.data_dir / TMP_DIR)
        private_dir(config.data_dir / VERSIONS_DIR)
        sweep_leftovers(store)
        if store.fail_unfinished_sweeps():
            log.warning("sweeps left unfinished by the previous server marked failed")
        waits = StatusWaits()
        on_backtest, on_live, on_sweep = _runner_callbacks(store, waits)
        executor, workers = _executor(config)
        runner = Runner(config.data_dir, on_backtest, on_live, max_workers=workers, executor=executor,
                        network=config.run_network, on_sweep=on_sweep)
        id_tokens = IdTokens(load_signing_key(config.data_dir), config.token_ttl)
        keys = open_keys(store, config.exchange_key_path)
        runner.start()
        failed = store.fail_unfinished_backtests(runner.adoptable_ids("backtest"))
        if failed:
            log.warning("%d backtest(s) left unfinished by the previous server marked failed", failed)
    except BaseException:
        store.close()
        raise
    server = Server(config, store, runner, id_tokens, uploads.Writer(), keys, waits)
    try:
        adopt_backtests(server)
        resume_deployments(server)
    except Exception:
        log.exception("could not resume the runs that were running")
    finally:
        runner.discard_unadopted()
    return server


def adopt_backtests(server: Server) -> None:
    """Watch again the backtests the previous server left running on the cluster."""
    store, runner = server.store, server.runner
    for backtest_id in runner.adoptable_ids("backtest"):
        handle = runner.adoptable("backtest", backtest_id)
        backtest = store.backtest_by_id(backtest_id)
        version = store.get_version(backtest.model_id, backtest.version_id) if backtest else None
        if backtest is None or backtest.finished or version is None:  # its model or version went meanwhile
            runner.executor.discard(handle)
            store.update_backtest(backtest_id, {"status": "failed", "ended_at": time.time(),
                                                "error": "server restarted while the backtest was running"})
            continue
        plans = server.config.plans["backtesting"]
        plan = plans.get(backtest.plan) or next(iter(plans.values()))
        try:
            submit_backtest(server, backtest, version, plan, store.project_owner(backtest.project_id), handle)
        except Exception:
            log.exception("could not adopt backtest %s", backtest_id)
            runner.executor.discard(handle)


def close_server(server: Server) -> None:
    try:
        server.writer.close()  # uploads being written finish (or fail) first
        server.runner.shutdown()
    finally:
        server.store.close()
