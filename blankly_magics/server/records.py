"""What the server remembers, as values, and the shape each one has in API answers.

The records are plain frozen dataclasses with the store's field names; ``to_api`` gives
the camelCase JSON a route answers with. How they are kept (SQLite) is ``store``'s
business, so the wire format and the storage can change apart.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

TERMINAL = ("completed", "failed", "cancelled")
# The metrics a backtest list carries for each completed backtest (Blankly's names).
SUMMARY_METRICS = ("Cumulative Returns (%)", "Compound Annual Growth Rate (%)", "Sharpe Ratio", "Sortino Ratio",
                   "Max Drawdown (%)", "Volatility")


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that strict JSON accepts: NaN/inf become null, numpy scalars plain."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    return str(value)


@dataclass(frozen=True)
class User:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class Project:
    id: str
    owner_id: str
    name: str
    description: str
    personal: bool
    created_at: float

    def to_api(self) -> dict[str, Any]:
        return {
            "projectId": self.id,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "personal": self.personal,
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class Model:
    id: str
    project_id: str
    name: str
    type: str
    description: str
    created_by: str
    created_at: float

    def to_api(self) -> dict[str, Any]:
        return {
            "modelId": self.id,
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "projectId": self.project_id,
            "description": self.description,
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class Version:
    id: str
    model_id: str
    number: int
    description: str
    created_at: float
    python_version: str
    sha256: str
    size: int
    uploaded_by: str
    zip_name: str  # relative to the data dir
    model_type: str
    schedule: Optional[str]
    manifest: dict[str, Any]

    def to_api(self) -> dict[str, Any]:
        return {
            "versionId": self.id,
            "modelId": self.model_id,
            "number": self.number,
            "description": self.description,
            "createdAt": self.created_at,
            "pythonVersion": self.python_version,
            "sha256": self.sha256,
            "size": self.size,
            "uploadedBy": self.uploaded_by,
            "type": self.model_type,
            "schedule": self.schedule,
        }


@dataclass(frozen=True)
class Backtest:
    id: str
    model_id: str
    version_id: str
    project_id: str
    status: str
    args: dict[str, Any]
    description: str
    plan: str
    created_at: float
    started_at: Optional[float]
    ended_at: Optional[float]
    exit_code: Optional[int]
    error: Optional[str]
    result: Optional[dict[str, Any]]
    summary: Optional[dict[str, Any]] = None  # in lists: a completed result's short form (summary_of)
    parameters: dict[str, Any] = field(default_factory=dict)  # the run's overrides of the parameters cell
    sweep_id: Optional[str] = None  # the sweep it is a point of

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_api(self, with_result: bool = False) -> dict[str, Any]:
        out = {
            "backtestId": self.id,
            "modelId": self.model_id,
            "versionId": self.version_id,
            "projectId": self.project_id,
            "status": self.status,
            "description": self.description,
            "args": self.args,
            "plan": self.plan,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "exitCode": self.exit_code,
            "error": self.error,
            "parameters": self.parameters,
            "sweepId": self.sweep_id,
        }
        if with_result:
            out["result"] = _camel_keys(self.result) if self.result is not None else None
        if self.summary is not None:
            out["summary"] = self.summary
        return out


def summary_of(metrics: Any, trades: Any, initial: Any, final: Any) -> Optional[dict[str, Any]]:
    """A completed result's short form for lists: its key metrics, trade count and account values
    (the parts are what SQLite's json_extract read of the stored result; all None: no result)."""
    if metrics is None and trades is None and final is None:
        return None
    try:
        named = json.loads(metrics) if isinstance(metrics, str) else {}
    except ValueError:
        named = {}
    named = named if isinstance(named, dict) else {}
    return {"metrics": json_safe({k: named[k] for k in SUMMARY_METRICS if k in named}), "trades": trades,
            "initialAccountValue": json_safe(initial), "finalAccountValue": json_safe(final)}


@dataclass(frozen=True)
class Sweep:
    """One sweep: a grid of parameter values, one backtest per point (its rows point back here)."""

    id: str
    model_id: str
    version_id: str
    project_id: str
    status: str
    grid: dict[str, list[Any]]  # parameter -> its values, in the order given
    parameters: dict[str, Any]  # fixed overrides every point gets
    objective: dict[str, str]  # {"metric", "goal"}
    constraints: list[str]
    args: dict[str, Any]
    description: str
    plan: str
    points: int
    created_at: float
    started_at: Optional[float]
    ended_at: Optional[float]
    error: Optional[str]

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_api(self) -> dict[str, Any]:
        return {
            "sweepId": self.id,
            "modelId": self.model_id,
            "versionId": self.version_id,
            "projectId": self.project_id,
            "status": self.status,
            "grid": self.grid,
            "parameters": self.parameters,
            "objective": self.objective,
            "constraints": self.constraints,
            "args": self.args,
            "description": self.description,
            "plan": self.plan,
            "points": self.points,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "error": self.error,
        }


def _camel_keys(result: dict[str, Any]) -> dict[str, Any]:
    """The runner reports snake_case (Blankly's names); the API answers camelCase."""

    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(part[:1].upper() + part[1:] for part in rest)

    return {camel(k): v for k, v in result.items()}


@dataclass(frozen=True)
class Deployment:
    model_id: str
    version_id: str
    plan: str
    desired: str  # "running" or "stopped": what the user asked for, kept across restarts
    state: str
    since: Optional[float]
    pid: Optional[int]
    exit_code: Optional[int]
    restarts: int
    error: Optional[str]
    log_tail: str
    updated_at: float

    def to_api(self) -> dict[str, Any]:
        return {
            "modelId": self.model_id,
            "state": self.state,
            "desiredState": self.desired,
            "versionId": self.version_id,
            "plan": self.plan,
            "since": self.since,
            "pid": self.pid,
            "exitCode": self.exit_code,
            "restarts": self.restarts,
            "error": self.error,
            "logTail": self.log_tail,
        }
