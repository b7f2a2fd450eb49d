"""What is on the server, as tables: projects, models, versions, live states, backtests."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..listing import Listing
from .lookup import find_model_id, project_id_of, project_ids, project_names

if TYPE_CHECKING:
    from ..session import Session


def projects(session: "Session") -> Listing:
    cols = [("projectId", "id"), ("name", "name"), ("description", "description"), ("createdAt", "created")]
    rows = [dict(p, projectId=project_id_of(p)) for p in session.client.projects()]
    return Listing("Projects", cols, rows)


def models(session: "Session", project: Optional[str] = None) -> Listing:
    """The models of ``project`` (an id or a name), or of every project."""
    names = project_names(session)
    rows = [dict(m, project=names.get(m.get("projectId"), m.get("projectId")))
            for pid in project_ids(session, project) for m in session.client.models(pid)]
    cols = [("name", "name"), ("type", "type"), ("project", "project"), ("createdAt", "created"), ("modelId", "id")]
    return Listing("Models", cols, rows)


def versions(session: "Session", model: str, project: Optional[str] = None) -> Listing:
    model_id = find_model_id(session, model, project)
    cols = [("versionId", "version"), ("createdAt", "created"), ("description", "description"),
            ("pythonVersion", "python"), ("size", "bytes")]
    return Listing(f"Versions of model {model_id}", cols, session.client.versions(model_id))


def statuses(session: "Session") -> Listing:
    """The live state of every model, named, with its project's name; the ids last, for tools."""
    names = project_names(session)
    rows = [dict(s, project=names.get(s.get("projectId"), s.get("projectId"))) for s in session.client.status()]
    cols = [("name", "model"), ("project", "project"), ("state", "state"), ("since", "since"), ("modelId", "id"),
            ("versionId", "version")]
    return Listing("Model status", cols, rows)


def backtests(session: "Session", model: str, project: Optional[str] = None) -> Listing:
    model_id = find_model_id(session, model, project)
    cols = [("backtestId", "backtest"), ("status", "status"), ("versionId", "version"),
            ("description", "description"), ("createdAt", "created"), ("endedAt", "ended")]
    return Listing(f"Backtests of model {model_id}", cols, session.client.backtests(model_id))
