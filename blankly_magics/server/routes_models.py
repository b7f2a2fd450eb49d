"""Routes under /model/ that change or list models: create, list, details, status,
deploy, backtest, upload, run, kill and delete."""
from __future__ import annotations

import logging
import shutil
import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from .checks import (check_parameter_names, choose_plan, choose_python, field_model_type, parse_backtest_args,
                     parse_parameters)
from .web import ApiError, field_id, field_text, read_fields, server_of
from .jobs import accepted, check_queue, live_job, start_live, submit_backtest
from .owned import deployment_view, model_version, owned_model, owned_project
from .store import User
from .version_upload import accept_upload, default_args

log = logging.getLogger("blankly_magics.server")


async def model_create(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    fields = await read_fields(request)
    project = owned_project(server, user, field_id(fields, "projectId", required=False))
    name = field_text(fields, "name", required=True, limit=200).strip()
    if not name:
        raise ApiError(400, "missing required field 'name'")
    kind = field_model_type(fields) or "strategy"
    description = field_text(fields, "description")
    return server.store.create_model(project.id, name, kind, description, user.name).to_api()


async def model_list(request: Request, user: User) -> list[dict[str, Any]]:
    server = server_of(request)
    fields = await read_fields(request)
    project = owned_project(server, user, field_id(fields, "projectId", required=False))
    return [m.to_api() for m in server.store.list_models(project.id)]


async def model_details(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    fields = await read_fields(request)
    model = owned_model(server, user, field_id(fields, "modelId"), field_id(fields, "projectId", required=False))
    out = model.to_api()
    out["versions"] = [v.to_api() for v in server.store.list_versions(model.id)]
    dep = server.store.get_deployment(model.id)
    out["deployment"] = None if dep is None else dep.to_api()
    return out


async def model_status(request: Request, user: User) -> list[dict[str, Any]]:
    server = server_of(request)
    out = []
    for model in server.store.owned_models(user.id):
        dep = server.store.get_deployment(model.id)
        out.append(
            {
                "modelId": model.id,
                "name": model.name,
                "projectId": model.project_id,
                "state": dep.state if dep else "none",
                "versionId": dep.version_id if dep else None,
                "since": dep.since if dep else None,
            }
        )
    return out


async def model_run(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    fields = await read_fields(request)
    model = owned_model(server, user, field_id(fields, "modelId"), field_id(fields, "projectId", required=False))
    version = model_version(server, model, field_id(fields, "versionId", required=False))
    plan_name, _ = choose_plan(server, "live", field_text(fields, "plan", limit=100))
    choose_python(server, version.python_version, "the version's pythonVersion")
    if version.model_type == "screener" and not version.schedule:
        raise ApiError(400, "this screener version has no schedule; upload it again with one")
    dep = server.store.start_deployment(model.id, version.id, plan_name)
    await start_live(server, live_job(server, model, version, plan_name, user.id))
    return accepted(model, version, dep.since or time.time())


async def model_kill(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    fields = await read_fields(request)
    model = owned_model(server, user, field_id(fields, "modelId"), field_id(fields, "projectId", required=False))
    await anyio.to_thread.run_sync(server.runner.kill, model.id)
    dep = server.store.get_deployment(model.id)
    if dep is not None:
        changes: dict[str, Any] = {"desired": "stopped"}
        if dep.state in ("starting", "building", "running"):
            changes.update(state="stopped", pid=None)
        server.store.update_deployment(model.id, changes)
    return {"status": "success", "modelId": model.id, "state": deployment_view(server, model.id)["state"]}


async def model_delete(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    fields = await read_fields(request)
    model = owned_model(server, user, field_id(fields, "modelId"), field_id(fields, "projectId", required=False))
    for sweep_id in server.store.unfinished_sweeps(model.id):
        server.runner.cancel_sweep(sweep_id)
    for backtest_id in server.store.unfinished_backtests(model.id):
        try:
            server.runner.cancel_backtest(backtest_id)
        except Exception:
            log.exception("could not cancel backtest %s", backtest_id)
    await anyio.to_thread.run_sync(server.runner.kill, model.id)
    run_dirs = [server.runner.live_log(model.id).parent] + [
        server.runner.backtest_log(b.id).parent
        for b in server.store.list_backtests(model.id)
        if b.finished
    ]
    # Rows first: a crash before the files go leaves only files, which startup sweeps.
    for zip_name in server.store.delete_model(model.id):
        (server.config.data_dir / zip_name).unlink(missing_ok=True)
    for run_dir in run_dirs:  # its logs (a cancelled run still ending keeps its own)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"status": "success", "modelId": model.id}


async def model_deploy(request: Request, user: User) -> dict[str, Any]:
    return await accept_upload(request, user, "deploy")


async def model_backtest(request: Request, user: User) -> dict[str, Any]:
    return await accept_upload(request, user, "backtest")


async def model_upload(request: Request, user: User) -> dict[str, Any]:
    return await accept_upload(request, user, "upload")


async def backtest_uploaded(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    check_queue(server)
    fields = await read_fields(request)
    model = owned_model(server, user, field_id(fields, "modelId"), field_id(fields, "projectId", required=False))
    version = model_version(server, model, field_id(fields, "versionId", required=False))
    args = parse_backtest_args(fields.get("backtestArgs"))
    if args is None:
        args = default_args(version.manifest)
    parameters = parse_parameters(fields.get("parameters"))
    check_parameter_names(version.manifest, parameters, "parameters")
    plan_name, plan = choose_plan(server, "backtesting", field_text(fields, "plan", limit=100))
    choose_python(server, version.python_version, "the version's pythonVersion")
    check_queue(server)  # again: others may have queued while this body was read
    backtest = server.store.add_backtest(
        model_id=model.id,
        version_id=version.id,
        project_id=model.project_id,
        args=args,
        description=field_text(fields, "backtestDescription"),
        plan=plan_name,
        parameters=parameters,
    )
    submit_backtest(server, backtest, version, plan, user.id)
    return accepted(model, version, backtest.created_at, backtestId=backtest.id)
