"""Finding projects, models and plans on the server by what the user typed (an id or a name)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..errors import BlanklyError
from ..formats import epoch_seconds, time_text

if TYPE_CHECKING:
    from ..session import Session

PLAN_KINDS = {"backtest": "backtesting", "backtesting": "backtesting", "live": "live"}


class RunError(BlanklyError, ValueError):
    """An expected problem with what was asked (an unknown plan, model or project), as one line."""


def record_id(record: dict, *keys: str) -> str:
    for key in keys:
        if record.get(key):
            return str(record[key])
    return ""


def model_id_of(model: dict) -> str:
    return record_id(model, "modelId", "id")


def project_id_of(project: dict) -> str:
    return record_id(project, "projectId", "id")


def _pick(records: list, ref: str, kind: str, id_key: str, where: str, listing: str) -> dict:
    """The record whose id is ``ref``, else the one named ``ref`` exactly, then
    case-insensitively; a RunError listing what there is otherwise. A name several
    records share is never settled by picking one: the error lists their ids."""
    for record in records:
        if ref in (record_id(record, id_key), record_id(record, "id")):
            return record
    for same in (lambda n: n == ref, lambda n: n.lower() == ref.lower()):
        named = [r for r in records if same(str(r.get("name") or ""))]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            ids = ", ".join(f"{record_id(r, id_key, 'id')} (created {time_text(r.get('createdAt'))})" for r in named)
            raise RunError(f"several {kind}s are named {ref!r}{where}: {ids}; pass --{kind} with one of these ids")
    known = ", ".join(f"{r.get('name')} ({record_id(r, id_key, 'id')})" for r in records[:20]) or "none"
    raise RunError(f"no {kind} {ref!r}{where}; {listing} {known}")


def resolve_project(session: "Session", ref: str) -> dict:
    """A project by id, else by exact name (then case-insensitive)."""
    projects = [p for p in session.client.projects() if isinstance(p, dict)]
    return _pick(projects, ref, "project", "projectId", "", "your projects:")


def project_ids(session: "Session", project: Optional[str] = None) -> list[str]:
    """The id of the project named ``project``, or of every project of the user."""
    if project:
        return [project_id_of(resolve_project(session, project))]
    return [project_id_of(p) for p in session.client.projects() if isinstance(p, dict)]


def project_names(session: "Session") -> dict[str, str]:
    """Each of the user's projects' name by its id (what tables show instead of the id)."""
    return {project_id_of(p): str(p.get("name") or project_id_of(p))
            for p in session.client.projects() if isinstance(p, dict)}


def resolve_model(session: "Session", ref: str, project_id: Optional[str] = None) -> dict:
    """A model by id, else by exact name (then case-insensitive), in ``project_id``
    or, when None, in every project of the user."""
    pids = [project_id] if project_id else project_ids(session)
    models = [m for pid in pids for m in session.client.models(pid) if isinstance(m, dict)]
    where = f" in project {project_id}" if project_id else " in your projects"
    return _pick(models, ref, "model", "modelId", where, "models:")


def find_model_id(session: "Session", model: str, project: Optional[str] = None) -> str:
    """``--model`` (and ``--project``) as the model's id."""
    project_id = project_id_of(resolve_project(session, project)) if project else None
    return model_id_of(resolve_model(session, model, project_id))


def plan_names(session: "Session", kind: str = "backtesting") -> list[str]:
    plans = session.client.plans(PLAN_KINDS.get(kind, kind))
    return list(plans) if isinstance(plans, dict) else []


def choose_plan(session: "Session", kind: str, plan: Optional[str] = None) -> str:
    """``plan`` checked against the server's plans of this kind; None -> the server's first plan."""
    names = plan_names(session, kind)
    label = PLAN_KINDS.get(kind, kind)
    if not names:
        raise RunError(f"the server at {session.url} offers no {label} plans")
    if plan is None:
        return names[0]
    if plan not in names:
        raise RunError(f"unknown {label} plan {plan!r}; the server offers: {', '.join(names)}")
    return plan


def find_uploaded_model(session: "Session", name: str, sha256: str, project_id: Optional[str] = None) -> Optional[dict]:
    """The model an unanswered upload created: named exactly ``name``, in ``project_id``
    (None: the personal project), holding a version whose zip has this ``sha256``.

    Only that exact upload counts, so a model of the same name made from other cells
    (another notebook, an older strategy) is never taken over. Should several hold it,
    the one whose matching version is newest. The model comes back with that version's
    "versionId"; None when the server holds no such upload."""
    client = session.client
    best: Optional[tuple[float, dict]] = None
    for model in client.models(project_id):
        if not isinstance(model, dict) or model.get("name") != name:
            continue
        for version in client.versions(model_id_of(model)):
            if isinstance(version, dict) and version.get("sha256") == sha256:
                when = epoch_seconds(version.get("createdAt")) or 0.0
                if best is None or when > best[0]:
                    best = (when, dict(model, versionId=version.get("versionId")))
    return best[1] if best else None
