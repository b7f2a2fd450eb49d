"""Monitoring routes (GET): a model's versions, backtests, deployment, logs and live activity,
and a backtest's status, result and logs; plus /backtest/cancel."""
from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from .activity import MAX_RECENT, model_activity as activity_page
from .longpoll import parse_wait
from .web import ApiError, field_id, field_offset, field_text, read_fields, server_of
from .logtail import read_log
from .owned import deployment_view, owned_backtest, owned_model
from .store import User


async def model_versions(request: Request, user: User) -> list[dict[str, Any]]:
    server = server_of(request)
    model = owned_model(server, user, field_id(await read_fields(request), "modelId"))
    return [v.to_api() for v in server.store.list_versions(model.id)]


async def model_backtests(request: Request, user: User) -> list[dict[str, Any]]:
    server = server_of(request)
    model = owned_model(server, user, field_id(await read_fields(request), "modelId"))
    return [b.to_api() for b in server.store.list_backtests(model.id)]


async def model_deployment(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    model = owned_model(server, user, field_id(await read_fields(request), "modelId"))
    return deployment_view(server, model.id)


async def model_logs(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    fields = await read_fields(request)
    model = owned_model(server, user, field_id(fields, "modelId"))
    offset = field_offset(fields)
    return read_log(server.runner.live_log(model.id), offset)


async def model_activity(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    fields = await read_fields(request)
    model = owned_model(server, user, field_id(fields, "modelId"))
    since = _whole(fields, "since", 0, 1 << 62, "the 'next' of the last answer")
    recent = _whole(fields, "recent", 0, MAX_RECENT, "a number of orders") if fields.get("recent") else None
    return await anyio.to_thread.run_sync(activity_page, server, model.id, since, recent)


def _whole(fields: dict[str, Any], name: str, low: int, high: int, what: str) -> int:
    raw = field_text(fields, name) or "0"
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high} ({what})")
    return int(raw)


async def backtest_status(request: Request, user: User) -> dict[str, Any]:
    """The status; with ``wait=S``, answered once it differs from ``status`` (the one the caller
    last saw; by default the one it has now) or is final, or after S seconds (longpoll.py)."""
    server = server_of(request)
    fields = await read_fields(request)
    backtest = owned_backtest(server, user, fields)
    try:
        wait = parse_wait(field_text(fields, "wait"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if wait:
        seen = field_text(fields, "status", limit=40) or backtest.status
        backtest = await server.waits.until_changed(
            backtest.id, lambda: owned_backtest(server, user, fields),
            lambda now: now.status == seen and not now.finished, wait)
    return with_progress(server, backtest.to_api())


async def backtest_result(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    return with_progress(server, owned_backtest(server, user, await read_fields(request)).to_api(with_result=True))


def with_progress(server: Any, status: dict[str, Any]) -> dict[str, Any]:
    """A backtest's status with the step its environment's build is at ("building"; else None)."""
    building = status["status"] == "building"
    status["progress"] = server.runner.progress("backtest", status["backtestId"]) if building else None
    return status


async def backtest_logs(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    fields = await read_fields(request)
    backtest = owned_backtest(server, user, fields)
    out = read_log(server.runner.backtest_log(backtest.id), field_offset(fields))
    # Complete once the run has finished and the reader has every byte of it.
    out["complete"] = backtest.finished and out["offset"] >= out["size"]
    return out


async def backtest_cancel(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    backtest = owned_backtest(server, user, await read_fields(request))
    if not backtest.finished:
        if backtest.sweep_id:  # a point not started yet is skipped when its turn comes: cancelled now
            if server.runner.cancel_point(backtest.id) == "running":
                raise ApiError(409, f"backtest {backtest.id} is a running point of sweep {backtest.sweep_id}: it "
                                    "ends by itself, or cancel the whole sweep (POST /sweep/cancel)")
            known = False
        else:
            known = await anyio.to_thread.run_sync(server.runner.cancel_backtest, backtest.id)
        if not known:  # the runner has no such run: nothing can finish it now
            server.store.update_backtest(
                backtest.id,
                {"status": "cancelled", "error": "cancelled by the user", "ended_at": time.time()},
            )
            server.waits.changed(backtest.id)
    return server.store.get_backtest(user.id, backtest.id).to_api()  # type: ignore[union-attr]
