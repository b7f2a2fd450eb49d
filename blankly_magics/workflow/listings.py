"""What is on the server, as tables: projects, models, versions, live states, backtests."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..listing import Listing
from .lookup import RunError, find_model_id, project_id_of, project_ids, project_names

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


# The key metrics a backtest list shows (from the server's summary of each completed result):
# column key -> (header, Blankly's metric name or summary field, larger is better).
BACKTEST_METRICS = {
    "return": ("return %", "Cumulative Returns (%)", True),
    "sharpe": ("Sharpe", "Sharpe Ratio", True),
    "drawdown": ("max drawdown %", "Max Drawdown (%)", False),
    "trades": ("trades", "trades", True),
}
BACKTEST_SORTS = ("created", *BACKTEST_METRICS)


def _with_metrics(row: dict) -> dict:
    summary = row.get("summary") or {}
    named = summary.get("metrics") or {}
    out = dict(row)
    for key, (_, name, _) in BACKTEST_METRICS.items():
        out[key] = summary.get(name) if name in summary else named.get(name)
    return out


def sort_backtests(rows: list, by: str) -> list:
    """Newest first ("created"), or best first by a key metric; backtests without it go last."""
    if by == "created":
        return rows
    if by not in BACKTEST_METRICS:
        raise RunError(f"cannot sort backtests by {by!r}; choose one of: {', '.join(BACKTEST_SORTS)}")
    larger_better = BACKTEST_METRICS[by][2]
    known = [r for r in rows if isinstance(r.get(by), (int, float))]
    return sorted(known, key=lambda r: r[by], reverse=larger_better) + [r for r in rows if r not in known]


def backtests(session: "Session", model: str, project: Optional[str] = None, sort: str = "created") -> Listing:
    """A model's backtests with their key metrics: newest first, or best first by ``sort``
    (return, sharpe, drawdown: the smallest first, trades)."""
    model_id = find_model_id(session, model, project)
    cols = [("backtestId", "backtest"), ("status", "status"), ("versionId", "version"), ("shown", "parameters"),
            ("sweepId", "sweep"), ("description", "description"), ("createdAt", "created")]
    cols += [(key, header) for key, (header, _, _) in BACKTEST_METRICS.items()]
    rows = sort_backtests([dict(_with_metrics(r), shown=parameters_text(r.get("parameters")))
                           for r in session.client.backtests(model_id)], sort)
    title = f"Backtests of model {model_id}"
    if sort != "created":
        title += f", by {BACKTEST_METRICS[sort][0]} (best first)"
    return Listing(title, cols, rows)


def parameters_text(parameters: Optional[dict]) -> str:
    """``low=25, high=75``: a run's overrides of the parameters cell, as listings show them."""
    return ", ".join(f"{name}={value!r}" for name, value in (parameters or {}).items())
