"""A sweep's fields as a request sends them, checked with the rules the client uses (``sweepspec``).

``grid`` is a JSON object of parameter -> list of values (text in a form, an object in a
JSON body), ``objective`` ``{"metric", "goal"}`` (default: maximize Sharpe Ratio),
``constraints`` a JSON list of texts like ``"Max Drawdown (%) < 25"``, ``parameters`` the
fixed overrides every point gets. The names are checked against the version's parameters
cell once its blankly.json is known (``check_names``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..sweepspec import Objective, SweepSpecError, check_grid, parse_constraints
from .checks import check_parameter_names, json_object, parse_parameters
from .web import ApiError

MAX_CONSTRAINTS = 32
MAX_WAITING = 20  # sweeps queued or running on the server before a new one gets 429


@dataclass
class SweepFields:
    """What to sweep: checked values, ready to store."""

    grid: dict[str, list[Any]]
    objective: Objective
    constraints: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def check_names(self, manifest: dict[str, Any]) -> None:
        """Every swept or fixed name is one the version's parameters cell assigns."""
        check_parameter_names(manifest, self.grid, "grid")
        check_parameter_names(manifest, self.parameters, "parameters")


def _json(raw: Any, name: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"{name} is not valid JSON ({str(exc)[:80]})") from None


def sweep_fields(fields: dict[str, Any]) -> SweepFields:
    """The sweep a request asks for; ApiError(400) naming the first thing wrong."""
    grid = json_object(fields.get("grid"), "grid", "a JSON object of parameter -> list of values",
                       '{"low": [20, 25, 30]}')
    if grid is None:
        raise ApiError(400, "missing required field 'grid' (a JSON object such as {\"low\": [20, 25, 30]})")
    raw_constraints = _json(fields.get("constraints") or [], "constraints")
    if isinstance(raw_constraints, str):
        raw_constraints = [raw_constraints]
    if not isinstance(raw_constraints, list) or len(raw_constraints) > MAX_CONSTRAINTS:
        raise ApiError(400, f"constraints must be a JSON list of at most {MAX_CONSTRAINTS} texts such as "
                            '"Max Drawdown (%) < 25"')
    parameters = parse_parameters(fields.get("parameters"))
    try:
        check_grid(grid)
        objective = Objective.from_dict(_json(fields.get("objective") or None, "objective"))
        constraints = [c.text for c in parse_constraints(raw_constraints)]
    except SweepSpecError as exc:
        raise ApiError(400, str(exc)) from None
    both = [name for name in grid if name in parameters]
    if both:
        raise ApiError(400, f"{both[0][:40]!r} is both swept (grid) and fixed (parameters): give it in one")
    return SweepFields(grid, objective, constraints, parameters)
