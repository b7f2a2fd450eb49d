"""Parameter sweeps: one upload, one version, one backtest per point of a grid, run on the server.

A sweep is a backtest run with a :class:`Sweep` (``RunRequest(kind="backtest", sweep=...)``):
``run`` builds and uploads it as any backtest, then :func:`wait_for_sweep` follows it
(one progress line: points finished of all, failures, the best so far) and returns a
``SweepResult``. The same from Python::

    from blankly_magics.workflow import Feedback, ModelSource, RunRequest, Sweep, run

    plan = Sweep.from_options(["low=20,25,30", "high=65:80:5"], maximize="Sharpe Ratio",
                              constraints=["Max Drawdown (%) < 25"])
    result = run(signed, RunRequest(kind="backtest", notebook=nb, sweep=plan), ModelSource(nb), Feedback())
    result.best, result.table

A stop while waiting leaves the sweep running on the server (``interrupts``); ``cancel_sweep``
stops its points not yet finished.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ..hints import NOTEBOOK, Hints
from ..listing import Listing
from ..results import TERMINAL_STATES
from ..sweep_result import SweepResult
from ..sweepspec import Objective, check_grid, grid_size, objective, parse_constraints
from . import interrupts
from .feedback import Feedback
from .fetch import fetch_backtest
from .lookup import find_model_id
from .params import grid

if TYPE_CHECKING:
    from ..session import Session

LONG_POLL = 2.0  # seconds the server may hold a status answer until another point ends
CANCEL_SETTLE = 15.0  # seconds a cancel waits for the server to stop the running points


@dataclass
class Sweep:
    """What a sweep varies and how it ranks its points: ``grid`` (parameter -> values, the first
    varying slowest), an objective, and constraints like ``"Max Drawdown (%) < 25"``."""

    grid: dict[str, list[Any]]
    objective: Objective = field(default_factory=Objective)
    constraints: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_grid(self.grid)
        self.constraints = [c.text for c in parse_constraints(list(self.constraints))]

    @classmethod
    def from_options(cls, sweeps: Iterable[str], *, maximize: Optional[str] = None, minimize: Optional[str] = None,
                     constraints: Iterable[str] = ()) -> "Sweep":
        """From ``--sweep NAME=VALUES`` items, ``--maximize``/``--minimize`` and ``--constraint``s."""
        return cls(grid(list(sweeps)), objective(maximize, minimize), list(constraints))

    @property
    def size(self) -> int:
        return grid_size(self.grid)

    def fields(self) -> dict[str, Any]:
        """The client's keywords for creating it."""
        return {"grid": self.grid, "objective": self.objective.to_dict(), "constraints": self.constraints}


def sweep_result(session: "Session", payload: dict, hints: Hints = NOTEBOOK) -> SweepResult:
    """A SweepResult whose ``result(i)`` fetches point ``i``'s backtest from this session."""
    return SweepResult.from_api(payload, fetch_result=lambda backtest_id: fetch_backtest(session, backtest_id, hints),
                                commands=hints)


def fetch_sweep(session: "Session", sweep_id: str, hints: Hints = NOTEBOOK) -> SweepResult:
    """A sweep's table as it stands: every point's state, parameters and metrics."""
    return sweep_result(session, session.client.sweep_table(sweep_id), hints)


def progress_text(status: dict) -> str:
    """Beside the bar: failures and the best point so far."""
    counts = status.get("counts") or {}
    parts = [f"{counts[state]} {state}" for state in ("failed", "cancelled") if counts.get(state)]
    best, goal = status.get("best"), Objective.from_dict(status.get("objective"))
    if best:
        values = ", ".join(f"{name}={value!r}" for name, value in (best.get("parameters") or {}).items()
                           if name in (status.get("grid") or {}))
        metric = (best.get("metrics") or {}).get(goal.metric)
        parts.append(f"best {goal.metric} {metric:.4g} at {values}" if isinstance(metric, (int, float))
                     else f"best at {values}")
    return "; ".join(parts)


def wait_for_sweep(session: "Session", sweep_id: str, feedback: Feedback, *, timeout: Optional[float] = None
                   ) -> SweepResult:
    """Follow the sweep until every point has ended (showing its progress on ``feedback``), then fetch its
    table. Past ``timeout`` seconds, or when the user stops waiting, what it holds so far: it goes on."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: dict = {"sweepId": sweep_id, "status": "unknown"}
    try:
        status = _follow(session, sweep_id, feedback, deadline, last)
    except interrupts.STOPS:
        feedback.cancel.request()  # the face can tell the run was stopped
        feedback.note(interrupts.while_sweeping(sweep_id, int(last.get("finished") or 0), int(last.get("points") or 0),
                                                feedback.hints))
        return sweep_result(session, last, feedback.hints)
    if status.get("status") not in TERMINAL_STATES:
        feedback.note(f"Still {status.get('status')} after {timeout:g} s; it keeps running: "
                      f"{feedback.hints.sweep(sweep_id)}")
    return fetch_sweep(session, sweep_id, feedback.hints)


def _follow(session: "Session", sweep_id: str, feedback: Feedback, deadline: Optional[float], last: dict) -> dict:
    """The sweep's last status: a final one, or the one seen at the deadline."""
    client = session.client
    seen: Optional[int] = None
    while True:
        feedback.cancel.check()
        wait = LONG_POLL if deadline is None else max(0.0, min(LONG_POLL, deadline - time.monotonic()))
        status = client.sweep_status(sweep_id, wait=wait if seen is not None else 0.0, seen=seen)
        last.clear()
        last.update(status)
        _show(feedback, status)
        if status.get("status") in TERMINAL_STATES or (deadline is not None and time.monotonic() >= deadline):
            return status
        seen = int(status.get("finished") or 0)


def _show(feedback: Feedback, status: dict) -> None:
    finished, total = int(status.get("finished") or 0), int(status.get("points") or 0)
    detail = progress_text(status)
    if feedback.points is not None:
        feedback.points(finished, total, detail)
    else:
        word = str(status.get("status"))
        text = f"Sweep {status.get('sweepId')}: {word}, {finished} of {total} points finished"
        feedback.status(text + (f" ({detail})" if detail else ""), word)


def cancel_sweep(session: "Session", sweep_id: str, settle: float = CANCEL_SETTLE) -> str:
    """Stop the sweep's points not yet finished (finished ones keep their results); the line to show."""
    client = session.client
    status = client.cancel_sweep(sweep_id)
    deadline = time.monotonic() + settle
    while status.get("status") not in TERMINAL_STATES and time.monotonic() < deadline:
        status = client.sweep_status(sweep_id, wait=min(LONG_POLL, settle), seen=int(status.get("finished") or 0))
    counts = status.get("counts") or {}
    state = status.get("status")
    done = ", ".join(f"{n} {word}" for word, n in counts.items())
    return f"Sweep {sweep_id}: {state} ({done})" + ("" if state in TERMINAL_STATES else " (cancel requested)")


def list_sweeps(session: "Session", model: Optional[str] = None, project: Optional[str] = None) -> Listing:
    """The user's sweeps (of ``model``, by id or name), newest first."""
    model_id = find_model_id(session, model, project) if model else None
    rows = []
    for sweep in session.client.sweeps(model_id):
        counts = sweep.get("counts") or {}
        finished = sum(n for state, n in counts.items() if state in TERMINAL_STATES)
        rows.append(dict(sweep, finished=f"{finished}/{sweep.get('points')}", failed=counts.get("failed", 0),
                         varies=_grid_text(sweep.get("grid") or {}),
                         ranks=Objective.from_dict(sweep.get("objective")).text))
    cols = [("sweepId", "sweep"), ("status", "status"), ("modelId", "model"), ("finished", "finished"),
            ("failed", "failed"), ("varies", "varies"), ("ranks", "objective"), ("createdAt", "created")]
    return Listing(f"Sweeps of model {model_id}" if model_id else "Sweeps", cols, rows)


def _grid_text(values: dict) -> str:
    return ", ".join(f"{name} ({len(v)})" for name, v in values.items())

