"""What a parameter sweep is, read the same way by the client and the server.

A sweep runs one backtest per point of a grid (``{"low": [20, 25], "high": [65, 70]}``:
the cartesian product, the first parameter varying slowest) and ranks the points by an
objective (a metric to maximize or minimize) among those that meet its constraints
(``"Max Drawdown (%) < 25"``). Metrics are named as Blankly prints them (its display
names). The client checks a sweep with these rules before it uploads anything; the
server checks it again with the same rules before it stores anything.
"""
from __future__ import annotations

import itertools
import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from .errors import BlanklyError

MAX_POINTS = 1000  # a larger grid is refused, with its size

# The metrics Blankly reports for a backtest (its platform result), by display name, in its order.
METRICS = (
    "Calmar Ratio",
    "Compound Annual Growth Rate (%)",
    "Conditional Value-at-Risk",
    "Cumulative Returns (%)",
    "Max Drawdown (%)",
    "Resampled Time",
    "Risk Free Return Rate",
    "Sharpe Ratio",
    "Sortino Ratio",
    "Value-at-Risk",
    "Variance (%)",
    "Volatility",
)
GOALS = ("maximize", "minimize")
DEFAULT_METRIC = "Sharpe Ratio"
CONSTRAINT_EXAMPLE = '"Max Drawdown (%) < 25"'
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt,
}
_NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_CONSTRAINT = re.compile(rf"^\s*(?P<metric>.+?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>{_NUMBER})\s*$")


class SweepSpecError(BlanklyError, ValueError):
    """A sweep that cannot run as asked (a metric, a constraint, a grid), said in one line."""


def metric_name(text: str) -> str:
    """Blankly's display name of a metric, matched exactly or ignoring case; else SweepSpecError."""
    wanted = str(text).strip()
    for name in METRICS:
        if wanted == name or wanted.lower() == name.lower():
            return name
    raise SweepSpecError(f"unknown metric {wanted[:60]!r}; Blankly's metrics are: {', '.join(METRICS)}")


@dataclass(frozen=True)
class Objective:
    """The metric a sweep ranks its points by, and which way."""

    metric: str = DEFAULT_METRIC
    goal: str = "maximize"

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise SweepSpecError(f"an objective is 'maximize' or 'minimize', not {str(self.goal)[:30]!r}")
        object.__setattr__(self, "metric", metric_name(self.metric))

    @property
    def text(self) -> str:
        return f"{self.goal} {self.metric}"

    def to_dict(self) -> dict[str, str]:
        return {"metric": self.metric, "goal": self.goal}

    @classmethod
    def from_dict(cls, data: Any) -> "Objective":
        if data is None:
            return cls()
        if not isinstance(data, Mapping) or not isinstance(data.get("metric", DEFAULT_METRIC), str):
            raise SweepSpecError('an objective is {"metric": NAME, "goal": "maximize" or "minimize"}')
        return cls(str(data.get("metric") or DEFAULT_METRIC), str(data.get("goal") or "maximize"))

    def better(self, a: float, b: float) -> bool:
        """Is ``a`` strictly better than ``b`` (ties keep the earlier point)?"""
        return a > b if self.goal == "maximize" else a < b


def objective(maximize: Optional[str] = None, minimize: Optional[str] = None) -> Objective:
    """``--maximize METRIC`` or ``--minimize METRIC`` (not both); maximize Sharpe Ratio when neither."""
    if maximize and minimize:
        raise SweepSpecError("give --maximize or --minimize, not both: a sweep ranks its points by one metric")
    if minimize:
        return Objective(minimize, "minimize")
    return Objective(maximize or DEFAULT_METRIC, "maximize")


@dataclass(frozen=True)
class Constraint:
    """``METRIC OP NUMBER``: a point counts only when its metric meets it."""

    metric: str
    op: str
    value: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.value:.15g}"

    def holds(self, metrics: Mapping[str, Any]) -> bool:
        value = metrics.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False  # no value (Blankly's NaN) meets no constraint
        return OPERATORS[self.op](float(value), self.value)


def parse_constraint(text: Any) -> Constraint:
    """``"Max Drawdown (%) < 25"`` -> a Constraint; SweepSpecError naming what does not read."""
    if not isinstance(text, str):
        raise SweepSpecError(f"a constraint is text like {CONSTRAINT_EXAMPLE}, not {type(text).__name__}")
    match = _CONSTRAINT.match(text)
    if match is None:
        raise SweepSpecError(f"constraint {text.strip()[:80]!r} does not read METRIC OP NUMBER (OP one of "
                             f"< <= > >= == !=), e.g. {CONSTRAINT_EXAMPLE}")
    return Constraint(metric_name(match["metric"]), match["op"], float(match["value"]))


def parse_constraints(texts: Sequence[Any]) -> list[Constraint]:
    return [parse_constraint(text) for text in texts]


def grid_size(grid: Mapping[str, Sequence[Any]]) -> int:
    return math.prod(len(values) for values in grid.values()) if grid else 0


def check_grid(grid: Mapping[str, Any]) -> None:
    """A grid the server can run: parameter names -> non-empty lists, at most MAX_POINTS points."""
    if not isinstance(grid, Mapping) or not grid:
        raise SweepSpecError("a sweep needs at least one parameter to vary, e.g. --sweep low=20,25,30")
    for name, values in grid.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SweepSpecError(f"{str(name)[:40]!r} is not a parameter name (a Python name, like low)")
        if not isinstance(values, list) or not values:
            raise SweepSpecError(f"parameter {name} has no values to sweep over; give at least one")
    size = grid_size(grid)
    if size > MAX_POINTS:
        sizes = " x ".join(f"{len(v)} {name}" for name, v in grid.items())
        raise SweepSpecError(f"the sweep has {size:,} points ({sizes}); a sweep runs at most {MAX_POINTS:,}: "
                             "use fewer values or coarser steps")


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every point of the grid in grid order: the cartesian product, the first parameter slowest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def best_point(rows: Sequence[Mapping[str, Any]], goal: Objective,
               constraints: Sequence[Constraint] = ()) -> tuple[Optional[int], Optional[str]]:
    """(index of the best row, None), or (None, why there is none). A row is
    ``{"status", "metrics": {...}}``; only completed rows meeting every constraint with a
    number for the objective count, and the first in grid order wins a tie."""
    best: Optional[int] = None
    completed = meeting = 0
    for index, row in enumerate(rows):
        if row.get("status") != "completed":
            continue
        completed += 1
        metrics = row.get("metrics") or {}
        if not all(c.holds(metrics) for c in constraints):
            continue
        meeting += 1
        value = metrics.get(goal.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if best is None or goal.better(float(value), float(rows[best]["metrics"][goal.metric])):
            best = index
    if best is not None:
        return best, None
    if not completed:
        return None, "no point has completed"
    if not meeting:
        wanted = " and ".join(c.text for c in constraints)
        return None, f"no completed point meets {wanted} ({completed} completed)"
    return None, f"no point that meets the constraints has a value for {goal.metric}"
