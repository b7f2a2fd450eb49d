"""What is on the server, as tables: projects, models, versions, live states, backtests."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..listing import Listing
from .lookup import find_model_id, project_id_of, project_ids

if TYPE_CHECKING:
    from ..session import Session


def projects(session: "Session") -> Listing:
    cols = [("projectId", "id"), ("name", "name"), ("description", "description"), ("createdAt", "created")]
    rows = [dict(p, projectId=project_id_of(p)) for p in session.client.projects()]
    return Listing("Projects", cols, rows)


def models(session: "Session", project: Optional[str] = None) -> Listing:
    """The models of ``project`` (an id or a name), or of every project."""
    rows = [m for pid in project_ids(session, project) for m in session.client.models(pid)]
    cols = [("modelId", "id"), ("name", "name"), ("type", "type"), ("projectId", "project"), ("createdAt", "created")]
    return Listing("Models", cols, rows)


def versions(session: "Session", model: str, project: Optional[str] = None) -> Listing:
    model_id = find_model_id(session, model, project)
    cols = [("versionId", "version"), ("createdAt", "created"), ("description", "description"),
            ("pythonVersion", "python"), ("size", "bytes")]
    return Listing(f"Versions of model {model_id}", cols, session.client.versions(model_id))


def statuses(session: "Session") -> Listing:
    """The live state of every model."""
    cols = [("modelId", "model"), ("name", "name"), ("state", "state"), ("versionId", "version"), ("since", "since")]
    return Listing("Model status", cols, session.client.status())


def backtests(session: "Session", model: str, project: Optional[str] = None) -> Listing:
    model_id = find_model_id(session, model, project)
    cols = [("backtestId", "backtest"), ("status", "status"), ("versionId", "version"), ("shown", "parameters"),
            ("sweepId", "sweep"), ("description", "description"), ("createdAt", "created"), ("endedAt", "ended")]
    rows = [dict(b, shown=parameters_text(b.get("parameters"))) for b in session.client.backtests(model_id)]
    return Listing(f"Backtests of model {model_id}", cols, rows)


def parameters_text(parameters: Optional[dict]) -> str:
    """``low=25, high=75``: a run's overrides of the parameters cell, as listings show them."""
    return ", ".join(f"{name}={value!r}" for name, value in (parameters or {}).items())
