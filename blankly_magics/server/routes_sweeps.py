"""Routes under /sweep/: create a sweep (from an upload or a stored version), read its state and
its table, cancel it, list them. Each point is a backtest of its own (``/backtest/*`` and
``/model/backtests`` show it), owned by the sweep's owner."""
from __future__ import annotations

import time
from typing import Any, Optional

import anyio
import anyio.to_thread
from starlette.requests import Request

from ..sweepspec import METRICS, Objective, best_point, parse_constraints
from .checks import choose_plan, choose_python, parse_backtest_args
from .jobs import accepted, check_sweeps, submit_sweep
from .owned import model_version, owned_model, owned_sweep
from .records import TERMINAL
from .store import Sweep, User
from .sweep_checks import sweep_fields
from .version_upload import accept_upload, default_args, record_sweep, sweep_answer
from .web import ApiError, field_id, field_text, read_fields, server_of

MAX_WAIT = 30.0  # seconds a /sweep/status long-poll may hold its answer
WAIT_TICK = 0.02  # how often a long-poll looks for a point's end
GATHER = 0.25  # a long poll with news of a point answers this long after it began at the soonest: a
# progress bar gains nothing from more, and the points' CPU loses to every answer (the sweep's end is at once)


async def sweep_create(request: Request, user: User) -> dict[str, Any]:
    """Multipart (the zip in ``model``, as /model/backtest): a new version and its sweep. Otherwise
    (JSON or a form): a sweep of a stored version (``modelId``, ``versionId`` default the latest)."""
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        return await accept_upload(request, user, "sweep")
    server = server_of(request)
    check_sweeps(server)
    fields = await read_fields(request)
    model = owned_model(server, user, field_id(fields, "modelId"), field_id(fields, "projectId", required=False))
    version = model_version(server, model, field_id(fields, "versionId", required=False))
    sweep = sweep_fields(fields)
    sweep.check_names(version.manifest)
    args = parse_backtest_args(fields.get("backtestArgs"))
    plan_name, plan = choose_plan(server, "backtesting", field_text(fields, "plan", limit=100))
    choose_python(server, version.python_version, "the version's pythonVersion")
    check_sweeps(server)  # again: others may have asked while this body was read
    recorded = record_sweep(server.store, model, version, sweep, default_args(version.manifest) if args is None
                            else args, field_text(fields, "description"), plan_name)
    submit_sweep(server, recorded[0], recorded[1], version, plan, user.id)
    return accepted(model, version, recorded[0].created_at, **sweep_answer(*recorded))


def sweep_view(server: Any, sweep: Sweep, *, rows: bool) -> dict[str, Any]:
    """The sweep with its points counted by state and its best point so far; with ``rows``, every
    point with its parameters and metrics (the table), else each point's state alone."""
    points = server.store.sweep_points(sweep.id)
    counts: dict[str, int] = {}
    for point in points:
        counts[point["status"]] = counts.get(point["status"], 0) + 1
    goal = Objective.from_dict(sweep.objective)
    best, reason = best_point(points, goal, parse_constraints(sweep.constraints))
    out = sweep.to_api()
    out.update(counts=counts, finished=sum(n for state, n in counts.items() if state in TERMINAL),
               best=points[best] if best is not None else None, bestReason=reason)
    if rows:
        out.update(parameterNames=list(sweep.grid), metricNames=list(METRICS), rows=points)
    else:
        out["states"] = [point["status"] for point in points]
    return out


def _seconds(fields: dict[str, Any], name: str, limit: float) -> float:
    raw = field_text(fields, name, limit=40) or "0"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= limit:
        raise ApiError(400, f"{name} is seconds to wait, from 0 to {limit:g}, not {raw[:20]!r}")
    return value


def _moved(finished: Optional[int], seen: int, points: int) -> bool:
    """True once a long poll has news: another point ended, or the sweep itself did. Its last point's
    end is answered with the sweep's own (a moment later), sparing the client a poll in between."""
    return finished is None or (finished != seen and finished < points)


async def sweep_status(request: Request, user: User) -> dict[str, Any]:
    """The sweep's state. ``wait=S`` (with ``seen``, the ``finished`` of the last answer): answer once
    another point has ended (at the soonest GATHER seconds after the request came), as soon as the
    sweep has, or after S seconds."""
    server = server_of(request)
    fields = await read_fields(request)
    sweep = owned_sweep(server, user, fields)
    wait = _seconds(fields, "wait", MAX_WAIT)
    seen = field_text(fields, "seen", limit=20)
    if wait and seen.isdigit() and not sweep.finished:
        began = time.monotonic()
        while time.monotonic() < began + wait:
            finished = server.runner.sweep_finished(sweep.id)
            if finished is None or (_moved(finished, int(seen), sweep.points)
                                    and time.monotonic() >= began + min(GATHER, wait)):
                break
            await anyio.sleep(WAIT_TICK)
        sweep = owned_sweep(server, user, fields)
    return sweep_view(server, sweep, rows=False)


async def sweep_table(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    return sweep_view(server, owned_sweep(server, user, await read_fields(request)), rows=True)


async def sweep_list(request: Request, user: User) -> list[dict[str, Any]]:
    """The user's sweeps (of ``modelId`` when given), newest first, each with its points counted."""
    server = server_of(request)
    fields = await read_fields(request)
    model_id = field_id(fields, "modelId", required=False)
    if model_id:
        owned_model(server, user, model_id)
    sweeps = server.store.list_sweeps(user.id, model_id or None)
    counts = server.store.sweep_counts([s.id for s in sweeps])
    return [dict(s.to_api(), counts=counts[s.id]) for s in sweeps]


async def sweep_cancel(request: Request, user: User) -> dict[str, Any]:
    """Stop the points not yet finished (running ones are stopped, the rest never start); the
    finished ones keep their results."""
    server = server_of(request)
    fields = await read_fields(request)
    sweep = owned_sweep(server, user, fields)
    if not sweep.finished and not await anyio.to_thread.run_sync(server.runner.cancel_sweep, sweep.id):
        # No runner holds it (the server restarted since): nothing can finish it now.
        now = time.time()
        for point in server.store.sweep_points(sweep.id, metrics=False):
            if point["status"] not in TERMINAL:
                server.store.update_backtest(point["backtestId"], {"status": "cancelled", "ended_at": now,
                                                                   "error": "cancelled by the user"})
        server.store.update_sweep(sweep.id, {"status": "cancelled", "ended_at": now, "error": "cancelled by the user"})
    return sweep_view(server, owned_sweep(server, user, fields), rows=False)
