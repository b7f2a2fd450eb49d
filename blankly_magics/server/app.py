"""The Deployment API over HTTP: one Starlette app, a flat list of routes.

Every answer is JSON and every error is ``{"error": "..."}`` with a fitting
status, unknown routes and crashes included. The routes live in routes_*.py,
one module per area; this module assembles them with the lifespan (lifecycle.py)
and the exception handlers.
"""
from __future__ import annotations

import logging
import sqlite3
from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import ServerConfig
from .web import ApiError, authed
from .jobs import RETRY_AFTER
from .lifecycle import close_server, open_server
from .routes_auth import auth_logout, auth_token, health
from .routes_models import (
    backtest_uploaded,
    model_backtest,
    model_create,
    model_delete,
    model_deploy,
    model_details,
    model_kill,
    model_list,
    model_run,
    model_status,
    model_upload,
)
from .routes_keys import keys_delete, keys_list, keys_set
from .routes_monitoring import (
    backtest_cancel,
    backtest_logs,
    backtest_result,
    backtest_status,
    model_activity,
    model_backtests,
    model_deployment,
    model_logs,
    model_versions,
)
from .routes_sweeps import sweep_cancel, sweep_create, sweep_list, sweep_status, sweep_table
from .routes_projects import (
    generate_project_token,
    project_create,
    project_list,
    project_plans,
    project_teams,
)
from .version_upload import INLINE_ENTRIES, INLINE_UNPACKED  # re-exported: tests read them

__all__ = ["ROUTES", "create_app", "ApiError", "INLINE_ENTRIES", "INLINE_UNPACKED"]

log = logging.getLogger("blankly_magics.server")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such route: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    else:
        message = str(exc.detail)
    return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)


async def _disconnected(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "the client disconnected before the request was complete"}, 400)


async def _database_error(request: Request, exc: Exception) -> Response:
    log.error("database error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"error": f"the server cannot use its database ({exc}); check the data dir's disk "
                  "space and permissions"},
        503,
        headers={"Retry-After": RETRY_AFTER},
    )


async def _crashed(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after answering, so uvicorn logs the traceback once.
    return JSONResponse({"error": "internal server error; the server log has the details"}, 500)


ROUTES = [
    Route("/health", health, methods=["GET"]),
    Route("/auth/token", auth_token, methods=["POST"]),
    Route("/auth/logout", authed(auth_logout), methods=["POST"]),
    Route("/project/create", authed(project_create), methods=["POST"]),
    Route("/project/list", authed(project_list), methods=["GET"]),
    Route("/project/plans", authed(project_plans), methods=["GET", "POST"]),
    Route("/project/teams", authed(project_teams), methods=["GET"]),
    Route("/project/generate-project-token", authed(generate_project_token), methods=["POST"]),
    Route("/model/create-model", authed(model_create), methods=["POST"]),
    Route("/model/list", authed(model_list), methods=["GET", "POST"]),
    Route("/model/details", authed(model_details), methods=["GET", "POST"]),
    Route("/model/status", authed(model_status), methods=["GET"]),
    Route("/model/deploy", authed(model_deploy), methods=["POST"]),
    Route("/model/backtest", authed(model_backtest), methods=["POST"]),
    Route("/model/backtestUploadedModel", authed(backtest_uploaded), methods=["POST"]),
    Route("/model/backtest-uploaded-model", authed(backtest_uploaded), methods=["POST"]),
    Route("/model/upload", authed(model_upload), methods=["POST"]),
    Route("/model/run", authed(model_run), methods=["POST"]),
    Route("/model/kill", authed(model_kill), methods=["POST"]),
    Route("/model/delete", authed(model_delete), methods=["POST"]),
    Route("/model/versions", authed(model_versions), methods=["GET"]),
    Route("/model/backtests", authed(model_backtests), methods=["GET"]),
    Route("/model/deployment", authed(model_deployment), methods=["GET"]),
    Route("/model/logs", authed(model_logs), methods=["GET"]),
    Route("/model/activity", authed(model_activity), methods=["GET"]),
    Route("/backtest/status", authed(backtest_status), methods=["GET"]),
    Route("/backtest/result", authed(backtest_result), methods=["GET"]),
    Route("/backtest/logs", authed(backtest_logs), methods=["GET"]),
    Route("/backtest/cancel", authed(backtest_cancel), methods=["POST"]),
    Route("/keys/list", authed(keys_list), methods=["GET"]),
    Route("/keys/set", authed(keys_set), methods=["POST"]),
    Route("/keys/delete", authed(keys_delete), methods=["POST"]),
    Route("/sweep/create", authed(sweep_create), methods=["POST"]),
    Route("/sweep/status", authed(sweep_status), methods=["GET"]),
    Route("/sweep/table", authed(sweep_table), methods=["GET"]),
    Route("/sweep/list", authed(sweep_list), methods=["GET"]),
    Route("/sweep/cancel", authed(sweep_cancel), methods=["POST"]),
]


def create_app(config: ServerConfig) -> Starlette:
    """The server as an ASGI app; its lifespan opens the store and starts the runner."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server = await anyio.to_thread.run_sync(open_server, config)
        app.state.server = server
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(close_server, server)

    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _disconnected,
            sqlite3.OperationalError: _database_error,
            Exception: _crashed,
        },
    )
