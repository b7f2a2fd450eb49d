"""Objects read through their owner: another user's id answers the same 404 as a missing one."""
from __future__ import annotations

from typing import Any

from .web import ApiError, field_id
from .state import Server
from .store import Backtest, Model, Project, Sweep, User, Version


def owned_project(server: Server, user: User, project_id: str) -> Project:
    """The user's project (the personal one when no id is given); 404 otherwise."""
    project = server.store.get_project(user.id, project_id or user.id)
    if project is None:
        raise ApiError(404, f"project {project_id[:60]!r} not found")
    return project


def owned_model(server: Server, user: User, model_id: str, project_id: str = "") -> Model:
    """The user's model. A projectId naming another of their projects must match it;
    the personal project's id is what the reference client always sends, so it does not."""
    model = server.store.get_model(user.id, model_id)
    if model is None:
        raise ApiError(404, f"model {model_id[:60]!r} not found")
    if project_id and project_id not in (model.project_id, user.id):
        owned_project(server, user, project_id)
        raise ApiError(404, f"model {model_id[:60]!r} not found in project {project_id[:60]!r}")
    return model


def model_version(server: Server, model: Model, version_id: str) -> Version:
    version = server.store.get_version(model.id, version_id or None)
    if version is None:
        if version_id:
            raise ApiError(404, f"version {version_id[:60]!r} of model {model.id!r} not found")
        raise ApiError(404, f"model {model.id!r} has no versions yet; upload one first")
    return version


def owned_backtest(server: Server, user: User, fields: dict[str, Any]) -> Backtest:
    backtest_id = field_id(fields, "backtestId")
    backtest = server.store.get_backtest(user.id, backtest_id)
    if backtest is None:
        raise ApiError(404, f"backtest {backtest_id[:60]!r} not found")
    return backtest


def owned_sweep(server: Server, user: User, fields: dict[str, Any]) -> Sweep:
    sweep_id = field_id(fields, "sweepId")
    sweep = server.store.get_sweep(user.id, sweep_id)
    if sweep is None:
        raise ApiError(404, f"sweep {sweep_id[:60]!r} not found")
    return sweep


def deployment_view(server: Server, model_id: str) -> dict[str, Any]:
    dep = server.store.get_deployment(model_id)
    if dep is None:
        return {
            "modelId": model_id, "state": "none", "desiredState": "stopped", "versionId": None,
            "plan": None, "since": None, "pid": None, "exitCode": None, "restarts": 0,
            "error": None, "logTail": "", "progress": None,
        }
    view = dep.to_api()
    # "building": the step its environment's build is at, kept by the runner while it builds
    view["progress"] = server.runner.progress("live", model_id) if dep.state == "building" else None
    return view
