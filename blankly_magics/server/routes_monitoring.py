"""Monitoring routes (GET): a model's versions, backtests, deployment and logs, and
a backtest's status, result and logs; plus /backtest/cancel."""
from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from .web import field_id, field_offset, read_fields, server_of
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


async def backtest_status(request: Request, user: User) -> dict[str, Any]:
    server = server_of(request)
    return with_progress(server, owned_backtest(server, user, await read_fields(request)).to_api())


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
        known = await anyio.to_thread.run_sync(server.runner.cancel_backtest, backtest.id)
        if not known:  # the runner has no such run: nothing can finish it now
            server.store.update_backtest(
                backtest.id,
                {"status": "cancelled", "error": "cancelled by the user", "ended_at": time.time()},
            )
    return server.store.get_backtest(user.id, backtest.id).to_api()  # type: ignore[union-attr]
