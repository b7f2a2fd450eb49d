"""The Deployment API over HTTP: one Starlette app, a flat list of routes.

Every answer is JSON and every error is ``{"error": "..."}`` with a fitting
status, unknown routes and crashes included. Routes read objects through
their owner, so another user's id answers the same 404 as a missing one.
Uploads are received (in memory while small, else into a temp file) and
checked, then written, fsynced and renamed into ``versions/``, then recorded
in one transaction; a failure at any point removes the file again, so it
leaves neither a row nor a file (startup sweeps what a killed process left).
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Optional
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from . import cron, uploads
from .config import PLAN_KINDS, ServerConfig, plan_limits
from .runner import BacktestJob, LiveJob, Runner
from .store import (
    TMP_DIR,
    VERSIONS_DIR,
    Backtest,
    Deployment,
    Model,
    Project,
    Store,
    User,
    Version,
    new_id,
    private_dir,
)
from .tokens import IdTokens, InvalidToken, hash_token, load_signing_key
from .zipcheck import ModelZipInfo, ZipRejected, ZipTooLarge, inspect_model_zip

SERVICE = "blankly-magics-deployment-server"
MAX_FORM_BYTES = 1 << 20  # a non-upload request body (form or JSON)
LOG_CHUNK = 256 * 1024  # most log bytes one /logs call answers
RETRY_AFTER = "5"
SECRET_KEYS = ("api_key", "api_pass")  # blankly.json may hold the project's keys: not copied
_PYTHON = re.compile(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*")
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_OR_BREAK = re.compile(r"[\x01-\x1f\x7f-\x9f\u2028\u2029]")
INLINE_ENTRIES = 256  # a small zip within these limits is checked on the event loop
INLINE_UNPACKED = 4 << 20
MAX_ARGS_DEPTH = 32  # backtest kwargs are shallow ({"initial_values": {"USD": 1}}); deeper is abuse

log = logging.getLogger("blankly_magics.server")


class ApiError(Exception):
    """An expected failure: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Optional[dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass
class Server:
    """What the routes share: settings, the database, the runner, the token signer,
    and the thread that writes uploads to disk."""

    config: ServerConfig
    store: Store
    runner: Runner
    id_tokens: IdTokens
    writer: uploads.Writer
    tmp_dir: Path = field(init=False)  # where uploads are received and written

    def __post_init__(self) -> None:
        self.tmp_dir = self.config.data_dir / TMP_DIR


# -- startup and shutdown ---------------------------------------------------------------


def sweep_leftovers(store: Store) -> None:
    """Remove what a killed process left half-done: temp uploads, zips no row points to."""
    data_dir = store.data_dir
    for path in (data_dir / TMP_DIR).iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    known = store.version_zip_names()
    for path in (data_dir / VERSIONS_DIR).iterdir():
        if f"{VERSIONS_DIR}/{path.name}" not in known:
            log.warning("removing %s: no version records it (left by an interrupted upload)", path)
            path.unlink(missing_ok=True)


def _runner_callbacks(store: Store) -> tuple[Callable, Callable]:
    # Called from the runner's threads; a failure here must not kill them.
    def on_backtest(backtest_id: str, fields: dict[str, Any]) -> None:
        try:
            store.update_backtest(backtest_id, fields)
        except Exception:
            log.exception("could not record backtest %s progress", backtest_id)

    def on_live(model_id: str, fields: dict[str, Any]) -> None:
        try:
            store.update_deployment(model_id, fields)
        except Exception:
            log.exception("could not record model %s state", model_id)

    return on_backtest, on_live


def resume_deployments(server: Server) -> None:
    """Start again the models that were meant to run when the last process stopped."""
    store = server.store
    for dep in store.deployments():
        if dep.desired != "running":
            if dep.state in ("starting", "running"):
                store.update_deployment(dep.model_id, {"state": "stopped", "pid": None})
            continue
        reason = _resume(server, dep)
        if reason is not None:
            store.update_deployment(
                dep.model_id,
                {"state": "stopped", "desired": "stopped", "pid": None,
                 "error": f"not restarted after the server restarted: {reason}"},
            )


def _resume(server: Server, dep: Deployment) -> Optional[str]:
    """Deploy a model's recorded version again; None, or the reason it cannot be."""
    store = server.store
    model = store.model_by_id(dep.model_id)
    version = store.get_version(dep.model_id, dep.version_id) if model else None
    if model is None or version is None or not store.version_path(version).exists():
        return "its version is missing"
    if version.python_version not in server.runner.python_versions():
        return f"Python {version.python_version} is not available any more"
    plans = server.config.plans["live"]
    plan_name = dep.plan if dep.plan in plans else next(iter(plans))  # the plan may be gone
    store.update_deployment(
        dep.model_id, {"state": "starting", "since": time.time(), "pid": None, "error": None}
    )
    owner = store.project_owner(model.project_id)
    try:
        server.runner.deploy(_live_job(server, model, version, plan_name, owner))
    except Exception as exc:
        return f"it could not be started: {exc}"
    return None


def open_server(config: ServerConfig) -> Server:
    """Open the store, clean up after a crash, start the runner and resume live models."""
    store = Store(config.data_dir, background_checkpoints=True)
    try:
        private_dir(config.data_dir / TMP_DIR)
        private_dir(config.data_dir / VERSIONS_DIR)
        sweep_leftovers(store)
        failed = store.fail_unfinished_backtests()
        if failed:
            log.warning("%d backtest(s) left unfinished by the previous server marked failed", failed)
        on_backtest, on_live = _runner_callbacks(store)
        runner = Runner(config.data_dir, on_backtest, on_live, max_workers=config.max_workers)
        id_tokens = IdTokens(load_signing_key(config.data_dir), config.token_ttl)
        runner.start()
    except BaseException:
        store.close()
        raise
    server = Server(config, store, runner, id_tokens, uploads.Writer())
    try:
        resume_deployments(server)
    except Exception:
        log.exception("could not resume the models that were running")
    return server


def close_server(server: Server) -> None:
    try:
        server.writer.close()  # uploads being written finish (or fail) first
        server.runner.shutdown()
    finally:
        server.store.close()


# -- request helpers --------------------------------------------------------------------


def _server(request: Request) -> Server:
    return request.app.state.server


def authenticate(request: Request) -> User:
    server = _server(request)
    token = request.headers.get("token")
    if not token:
        raise ApiError(
            401,
            "missing 'token' header: exchange your refresh token at POST /auth/token "
            "and send the idToken in a header named 'token'",
        )
    try:
        claims = server.id_tokens.verify(token)
    except InvalidToken as exc:
        raise ApiError(401, f"{exc}; exchange your refresh token again at POST /auth/token") from None
    user = server.store.session_user(claims.session_id, claims.user_id)
    if user is None:
        raise ApiError(401, "this sign-in was revoked (logged out); sign in again")
    return user


Handler = Callable[[Request, User], Awaitable[Any]]


def authed(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a route: authenticate first, answer the handler's value as JSON."""

    async def endpoint(request: Request) -> Response:
        user = authenticate(request)
        result = await handler(request, user)
        return result if isinstance(result, Response) else JSONResponse(result)

    endpoint.__name__ = handler.__name__
    return endpoint


async def read_fields(request: Request) -> dict[str, Any]:
    """The request's fields: the query string, overlaid by a form or JSON body."""
    fields: dict[str, Any] = dict(request.query_params)
    if request.method == "GET":
        return fields
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, f"the request body is larger than {MAX_FORM_BYTES} bytes")
    if not body:
        return fields
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the JSON body must be an object of fields")
        fields.update(data)
    elif ctype in ("application/x-www-form-urlencoded", ""):
        try:
            fields.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, f"the form body cannot be read: {exc}") from None
    else:
        raise ApiError(
            400, f"send this form as application/x-www-form-urlencoded or JSON, not {ctype}"
        )
    return fields


def _text(fields: dict[str, Any], name: str, *, required: bool = False, limit: int = 10_000) -> str:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"missing required field '{name}'")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ApiError(400, f"field '{name}' must be text")
    text = str(value)
    if len(text) > limit:
        raise ApiError(400, f"field '{name}' is longer than {limit} characters")
    if "\x00" in text:
        raise ApiError(400, f"field '{name}' contains a NUL character")
    # Names and ids are one line; descriptions (the long fields) may hold tabs and newlines.
    # Other control characters only garble terminals and logs: refuse them.
    control = _CONTROL if limit > 200 else _CONTROL_OR_BREAK
    bad = control.search(text)
    if bad:
        raise ApiError(
            400, f"field '{name}' contains a control character ({bad.group()!r}); send plain text"
        )
    return text


def _id(fields: dict[str, Any], name: str, required: bool = True) -> str:
    return _text(fields, name, required=required, limit=200).strip()


def _flag(fields: dict[str, Any], name: str) -> Optional[bool]:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ApiError(400, f"field '{name}' must be true or false, not {str(value)[:40]!r}")


def _offset(fields: dict[str, Any]) -> int:
    raw = _text(fields, "offset") or "0"
    try:
        offset = int(raw)
    except ValueError:
        offset = -1
    if offset < 0:
        raise ApiError(400, "offset must be a whole number >= 0 (the 'offset' of the last answer)")
    return offset


def _model_type(fields: dict[str, Any]) -> str:
    kind = _text(fields, "type").strip().lower()
    if kind and kind not in ("strategy", "screener"):
        raise ApiError(400, f"type must be 'strategy' or 'screener', not {kind[:40]!r}")
    return kind


def _plan(server: Server, kind: str, name: str) -> tuple[str, dict[str, Any]]:
    """The named plan of ``kind`` (the first, smallest, when no name is given)."""
    plans = server.config.plans[kind]
    if not name:
        name = next(iter(plans))
    if name not in plans:
        raise ApiError(400, f"unknown {kind} plan {name[:60]!r}; choose one of: {', '.join(plans)}")
    return name, plans[name]


def _python(server: Server, requested: str, source: str) -> str:
    """Normalise a python version to X.Y and check the runner can use it."""
    available = server.runner.python_versions()
    if not requested:
        own = f"{sys.version_info[0]}.{sys.version_info[1]}"
        requested = own if own in available or not available else available[0]
    match = _PYTHON.fullmatch(str(requested))
    if not match:
        raise ApiError(400, f"{source} {str(requested)[:40]!r} is not a Python version like 3.11")
    version = f"{match[1]}.{match[2]}"
    if version not in available:
        raise ApiError(
            400,
            f"this server cannot run Python {version} ({source}); "
            f"it can run: {', '.join(available) or 'none'}",
        )
    return version


def _backtest_args(raw: Any) -> Optional[dict[str, Any]]:
    if raw is None or raw == "":
        return None
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiError(
                400,
                f"backtestArgs is not valid JSON ({str(exc)[:80]}); "
                'send a JSON object such as {"to": "1y"}',
            ) from None
    if not isinstance(value, dict):
        raise ApiError(
            400,
            "backtestArgs must be a JSON object of .backtest() keyword arguments, "
            f'such as {{"to": "1y"}}, not {type(value).__name__}',
        )
    if _depth(value) > MAX_ARGS_DEPTH:
        # Storing it walks it recursively: a deep enough value would crash that walk.
        raise ApiError(400, f"backtestArgs is nested more than {MAX_ARGS_DEPTH} levels deep")
    return value


def _depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (iteratively: the value itself may be deep)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_ARGS_DEPTH:
                break
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _check_schedule(schedule: str) -> str:
    try:
        return cron.parse(schedule).text
    except cron.CronError as exc:
        raise ApiError(400, f"schedule: {exc}") from None


def _manifest_schedule(manifest: dict[str, Any]) -> str:
    screener = manifest.get("screener")
    if isinstance(screener, dict) and isinstance(screener.get("schedule"), str):
        return screener["schedule"].strip()
    return ""


def _project(server: Server, user: User, project_id: str) -> Project:
    """The user's project (the personal one when no id is given); 404 otherwise."""
    project = server.store.get_project(user.id, project_id or user.id)
    if project is None:
        raise ApiError(404, f"project {project_id[:60]!r} not found")
    return project


def _model(server: Server, user: User, model_id: str, project_id: str = "") -> Model:
    """The user's model. A projectId naming another of their projects must match it;
    the personal project's id is what the reference client always sends, so it does not."""
    model = server.store.get_model(user.id, model_id)
    if model is None:
        raise ApiError(404, f"model {model_id[:60]!r} not found")
    if project_id and project_id not in (model.project_id, user.id):
        _project(server, user, project_id)
        raise ApiError(404, f"model {model_id[:60]!r} not found in project {project_id[:60]!r}")
    return model


def _version(server: Server, model: Model, version_id: str) -> Version:
    version = server.store.get_version(model.id, version_id or None)
    if version is None:
        if version_id:
            raise ApiError(404, f"version {version_id[:60]!r} of model {model.id!r} not found")
        raise ApiError(404, f"model {model.id!r} has no versions yet; upload one first")
    return version


def _backtest(server: Server, user: User, fields: dict[str, Any]) -> Backtest:
    backtest_id = _id(fields, "backtestId")
    backtest = server.store.get_backtest(user.id, backtest_id)
    if backtest is None:
        raise ApiError(404, f"backtest {backtest_id[:60]!r} not found")
    return backtest


def _check_queue(server: Server) -> None:
    if server.store.count_queued() >= server.config.max_queue:
        raise ApiError(
            429,
            f"{server.config.max_queue} backtests are already waiting; try again in a moment",
            {"Retry-After": RETRY_AFTER},
        )


def _job_fields(
    server: Server, version: Version, project_id: str, plan: dict[str, Any], user_id: str
) -> dict[str, Any]:
    """What every runner job says about the version it runs and its limits."""
    return {
        "model_id": version.model_id,
        "version_id": version.id,
        "project_id": project_id,
        "zip_path": server.store.version_path(version),
        "python_version": version.python_version,
        "model_type": version.model_type,
        "limits": plan_limits(plan),
        "user_id": user_id,
    }


def _live_job(
    server: Server, model: Model, version: Version, plan_name: str, user_id: str
) -> LiveJob:
    plan = server.config.plans["live"][plan_name]
    return LiveJob(
        **_job_fields(server, version, model.project_id, plan, user_id), schedule=version.schedule
    )


def _submit_backtest(
    server: Server, backtest: Backtest, version: Version, plan: dict, user_id: str
) -> None:
    job = BacktestJob(
        backtest_id=backtest.id,
        backtest_args=backtest.args,
        **_job_fields(server, version, backtest.project_id, plan, user_id),
    )
    try:
        server.runner.submit_backtest(job)
    except Exception as exc:
        log.exception("could not queue backtest %s", backtest.id)
        reason = f"the backtest could not be queued: {exc}"
        server.store.update_backtest(
            backtest.id, {"status": "failed", "error": reason, "ended_at": time.time()}
        )
        raise ApiError(503, reason) from None


async def _start_live(server: Server, job: LiveJob) -> None:
    try:
        await anyio.to_thread.run_sync(server.runner.deploy, job)
    except Exception as exc:
        log.exception("could not start model %s", job.model_id)
        reason = f"the model is stored but could not be started: {exc}"
        server.store.update_deployment(
            job.model_id, {"state": "stopped", "desired": "stopped", "error": reason}
        )
        raise ApiError(503, reason) from None


def _success(model: Model, version: Version, timestamp: float, **extra: str) -> dict[str, Any]:
    return {
        "status": "success",
        "timestamp": timestamp,
        "modelId": model.id,
        "versionId": version.id,
        "projectId": model.project_id,
        **extra,
    }


def read_log(path: Path, offset: int) -> dict[str, Any]:
    """Up to LOG_CHUNK bytes of a log from ``offset``; restarts at 0 if the log was replaced."""
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return {"text": "", "offset": 0, "size": 0}
    if offset > size:
        offset = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(LOG_CHUNK)
    cut = _utf8_cut(data)
    return {"text": data[:cut].decode("utf-8", "replace"), "offset": offset + cut, "size": size}


def _utf8_cut(data: bytes) -> int:
    """Length of ``data`` without a UTF-8 sequence cut off at its end (read it next time)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte or ASCII
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return len(data) - back if need > back and len(data) > back else len(data)
    return len(data)


# -- auth and health --------------------------------------------------------------------


async def health(request: Request) -> Response:
    return JSONResponse({"service": SERVICE, "version": __version__})


async def auth_token(request: Request) -> Response:
    server = _server(request)
    fields = await read_fields(request)
    refresh = _text(fields, "refreshToken", required=True, limit=1000)
    found = server.store.find_refresh_token(hash_token(refresh))
    if found is None:
        raise ApiError(
            401,
            "the refresh token is not valid (unknown or revoked); get a new one with "
            "`python -m blankly_magics.server token --data-dir DIR`",
        )
    session_id, user = found
    return JSONResponse(
        {
            "idToken": server.id_tokens.issue(user.id, session_id),
            "expiresIn": server.id_tokens.ttl,
            "data": {"user_id": user.id, "name": user.name},
        }
    )


async def auth_logout(request: Request, user: User) -> dict[str, Any]:
    fields = await read_fields(request)
    refresh = _text(fields, "refreshToken", required=True, limit=1000)
    revoked = _server(request).store.revoke_refresh_token(hash_token(refresh), user.id)
    return {"status": "success", "revoked": revoked}


# -- projects ---------------------------------------------------------------------------


async def project_create(request: Request, user: User) -> dict[str, Any]:
    fields = await read_fields(request)
    name = _text(fields, "name", required=True, limit=200).strip()
    if not name:
        raise ApiError(400, "missing required field 'name'")
    description = _text(fields, "description")
    return _server(request).store.create_project(user.id, name, description).to_api()


async def project_list(request: Request, user: User) -> list[dict[str, Any]]:
    return [p.to_api() for p in _server(request).store.list_projects(user.id)]


async def project_plans(request: Request, user: User) -> dict[str, Any]:
    fields = await read_fields(request)
    kind = _text(fields, "type").strip().lower() or "backtesting"
    if kind not in PLAN_KINDS:
        raise ApiError(400, f"unknown plan type {kind[:40]!r}; use 'backtesting' or 'live'")
    return _server(request).config.plans[kind]


async def project_teams(request: Request, user: User) -> list[dict[str, Any]]:
    return []  # a local server has no teams; every project belongs to one user


async def generate_project_token(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    fields = await read_fields(request)
    project = _project(server, user, _id(fields, "projectId", required=False))
    name = _text(fields, "name", limit=200) or "API key"
    autogenerated = _flag(fields, "autogenerated")
    api_key, api_pass = secrets.token_hex(16), secrets.token_urlsafe(32)
    server.store.add_project_token(
        project.id, name, api_key, hash_token(api_pass), bool(autogenerated)
    )
    return {"apiKey": api_key, "apiPass": api_pass}


# -- models -----------------------------------------------------------------------------


async def model_create(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    fields = await read_fields(request)
    project = _project(server, user, _id(fields, "projectId", required=False))
    name = _text(fields, "name", required=True, limit=200).strip()
    if not name:
        raise ApiError(400, "missing required field 'name'")
    kind = _model_type(fields) or "strategy"
    description = _text(fields, "description")
    return server.store.create_model(project.id, name, kind, description, user.name).to_api()


async def model_list(request: Request, user: User) -> list[dict[str, Any]]:
    server = _server(request)
    fields = await read_fields(request)
    project = _project(server, user, _id(fields, "projectId", required=False))
    return [m.to_api() for m in server.store.list_models(project.id)]


def _deployment_api(server: Server, model_id: str) -> dict[str, Any]:
    dep = server.store.get_deployment(model_id)
    if dep is None:
        return {
            "modelId": model_id, "state": "none", "desiredState": "stopped", "versionId": None,
            "plan": None, "since": None, "pid": None, "exitCode": None, "restarts": 0,
            "error": None, "logTail": "",
        }
    return dep.to_api()


async def model_details(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    fields = await read_fields(request)
    model = _model(server, user, _id(fields, "modelId"), _id(fields, "projectId", required=False))
    out = model.to_api()
    out["versions"] = [v.to_api() for v in server.store.list_versions(model.id)]
    dep = server.store.get_deployment(model.id)
    out["deployment"] = None if dep is None else dep.to_api()
    return out


async def model_status(request: Request, user: User) -> list[dict[str, Any]]:
    server = _server(request)
    out = []
    for model in server.store.owned_models(user.id):
        dep = server.store.get_deployment(model.id)
        out.append(
            {
                "modelId": model.id,
                "name": model.name,
                "projectId": model.project_id,
                "state": dep.state if dep else "none",
                "versionId": dep.version_id if dep else None,
                "since": dep.since if dep else None,
            }
        )
    return out


async def model_versions(request: Request, user: User) -> list[dict[str, Any]]:
    server = _server(request)
    model = _model(server, user, _id(await read_fields(request), "modelId"))
    return [v.to_api() for v in server.store.list_versions(model.id)]


async def model_backtests(request: Request, user: User) -> list[dict[str, Any]]:
    server = _server(request)
    model = _model(server, user, _id(await read_fields(request), "modelId"))
    return [b.to_api() for b in server.store.list_backtests(model.id)]


async def model_deployment(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    model = _model(server, user, _id(await read_fields(request), "modelId"))
    return _deployment_api(server, model.id)


async def model_logs(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    fields = await read_fields(request)
    model = _model(server, user, _id(fields, "modelId"))
    offset = _offset(fields)
    return read_log(server.runner.live_log(model.id), offset)


async def model_run(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    fields = await read_fields(request)
    model = _model(server, user, _id(fields, "modelId"), _id(fields, "projectId", required=False))
    version = _version(server, model, _id(fields, "versionId", required=False))
    plan_name, _ = _plan(server, "live", _text(fields, "plan", limit=100))
    _python(server, version.python_version, "the version's pythonVersion")
    if version.model_type == "screener" and not version.schedule:
        raise ApiError(400, "this screener version has no schedule; upload it again with one")
    dep = server.store.start_deployment(model.id, version.id, plan_name)
    await _start_live(server, _live_job(server, model, version, plan_name, user.id))
    return _success(model, version, dep.since or time.time())


async def model_kill(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    fields = await read_fields(request)
    model = _model(server, user, _id(fields, "modelId"), _id(fields, "projectId", required=False))
    await anyio.to_thread.run_sync(server.runner.kill, model.id)
    dep = server.store.get_deployment(model.id)
    if dep is not None:
        changes: dict[str, Any] = {"desired": "stopped"}
        if dep.state in ("starting", "running"):
            changes.update(state="stopped", pid=None)
        server.store.update_deployment(model.id, changes)
    return {"status": "success", "modelId": model.id, "state": _deployment_api(server, model.id)["state"]}


async def model_delete(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    fields = await read_fields(request)
    model = _model(server, user, _id(fields, "modelId"), _id(fields, "projectId", required=False))
    for backtest_id in server.store.unfinished_backtests(model.id):
        try:
            server.runner.cancel_backtest(backtest_id)
        except Exception:
            log.exception("could not cancel backtest %s", backtest_id)
    await anyio.to_thread.run_sync(server.runner.kill, model.id)
    run_dirs = [server.runner.live_log(model.id).parent] + [
        server.runner.backtest_log(b.id).parent
        for b in server.store.list_backtests(model.id)
        if b.finished
    ]
    # Rows first: a crash before the files go leaves only files, which startup sweeps.
    for zip_name in server.store.delete_model(model.id):
        (server.config.data_dir / zip_name).unlink(missing_ok=True)
    for run_dir in run_dirs:  # its logs (a cancelled run still ending keeps its own)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"status": "success", "modelId": model.id}


# -- uploads ----------------------------------------------------------------------------


@dataclass
class _Target:
    """Where an upload goes, checked before its zip is opened."""

    project_id: str
    model: Optional[Model]
    plan_name: str
    plan: dict[str, Any]
    model_type: str
    backtest_args: Optional[dict[str, Any]]


def _upload_target(server: Server, user: User, fields: dict[str, Any], action: str) -> _Target:
    plan_kind = "backtesting" if action == "backtest" else "live"
    plan_name, plan = _plan(server, plan_kind, _text(fields, "plan", limit=100))
    project_id = _id(fields, "projectId", required=False) or user.id
    if project_id != user.id:  # (the personal project, whose id is the user's, always exists)
        _project(server, user, project_id)
    model_id = _id(fields, "modelId", required=False)
    create_new = _flag(fields, "createNew")
    model = None
    if model_id:
        if create_new:
            raise ApiError(
                400,
                "createNew=true makes a new model but modelId was given too; leave out modelId "
                "to create a model, or createNew to add a version to that model",
            )
        model = _model(server, user, model_id, project_id)
        project_id = model.project_id
    elif create_new is False:
        raise ApiError(
            400,
            "createNew is false but no modelId was given: send the modelId to add a version to, "
            "or createNew=true to create a model",
        )
    args = _backtest_args(fields.get("backtestArgs")) if action == "backtest" else None
    return _Target(project_id, model, plan_name, plan, _model_type(fields), args)


async def _receive(request: Request, server: Server) -> uploads.Upload:
    limit = server.config.max_upload
    try:
        uploads.check_declared_length(request.headers, limit)
        return await uploads.receive_upload(
            request.headers.get("content-type"), request.stream(), server.tmp_dir, limit
        )
    except uploads.UploadError as exc:
        headers = {"Connection": "close"} if exc.status == 413 else None
        raise ApiError(exc.status, exc.message, headers) from None


async def _accept_upload(request: Request, user: User, action: str) -> dict[str, Any]:
    """deploy, backtest and upload: store the zip as a new version, then run it.

    Only what waits for the disk leaves the event loop: writing the zip for good
    (create, write, fsync, rename) on the server's writer thread, and checking a
    large zip on a worker thread. The rest is CPU work that holds the GIL wherever it
    runs: here it costs no thread hand-offs (several per upload, measured as the
    loop waiting for the GIL), and SQLite's commit does not wait for the disk
    (WAL, synchronous=NORMAL).
    """
    server = _server(request)
    if action == "backtest":
        _check_queue(server)
    upload = await _receive(request, server)
    version_id = new_id()
    zip_name = f"{VERSIONS_DIR}/{version_id}.zip"
    final = server.config.data_dir / zip_name
    try:
        if not upload.has_zip:
            raise ApiError(
                400, f"no zip attached: send the model zip as multipart field '{uploads.FILE_FIELD}'"
            )
        target = _upload_target(server, user, upload.fields, action)
        checked = _check_upload(server, await _inspect(server, upload), upload, target, action)
        await _place(server, upload, final)
        model, version, backtest = _record_upload(
            server, user, upload, target, checked, action, version_id, zip_name
        )
    except BaseException:
        _remove_unrecorded(final)  # placed, but no row points to it (cancelled, refused)
        raise
    finally:
        upload.discard()  # whatever is left of a refused upload
    if backtest is not None:
        _submit_backtest(server, backtest, version, target.plan, user.id)
        return _success(model, version, version.created_at, backtestId=backtest.id)
    if action == "deploy":
        await _start_live(server, _live_job(server, model, version, target.plan_name, user.id))
    return _success(model, version, version.created_at)


async def _inspect(server: Server, upload: uploads.Upload) -> ModelZipInfo:
    """Check the zip: here if it is small in every way, else on a worker thread.

    A zip held in memory is at most uploads.MEMORY_LIMIT bytes, but could still hold
    many entries or unpack to a lot (deflate packs zeros 1000:1, bzip2 far more): it is
    checked here under tighter limits, and one that passes them takes at most a few
    milliseconds; one over them is checked again, under the server's, off the loop.
    """
    limits = server.config.zip_limits
    try:
        if upload.data is not None:
            quick = replace(
                limits,
                max_entries=min(limits.max_entries, INLINE_ENTRIES),
                max_uncompressed=min(limits.max_uncompressed, INLINE_UNPACKED),
                bzip2_lzma=False,
            )
            try:
                return inspect_model_zip(upload.data, quick)
            except ZipTooLarge:
                if quick == limits:
                    raise
        return await anyio.to_thread.run_sync(inspect_model_zip, upload.source, limits)
    except ZipRejected as exc:
        raise ApiError(exc.status, exc.message) from None


def _remove_unrecorded(path: Path) -> None:
    if not os.path.lexists(path):  # the upload failed before it was placed
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:  # an unwritable versions/ cannot hold it anyway; startup sweeps strays
        log.warning("could not remove %s after a failed upload", path)


@dataclass
class _Checked:
    """What an upload's zip and fields say, once both were checked."""

    info: ModelZipInfo
    model_type: str
    python: str
    schedule: Optional[str]
    args: dict[str, Any]


def _default_args(manifest: dict[str, Any]) -> dict[str, Any]:
    args = manifest.get("backtest_args")
    return args if isinstance(args, dict) else {}


async def _place(server: Server, upload: uploads.Upload, final: Path) -> None:
    """Put the zip at ``final`` for good (written, fsynced, renamed) before any row can point to it."""
    try:
        await uploads.place(upload, server.tmp_dir, final, server.writer)
    except uploads.UploadError as exc:
        raise ApiError(exc.status, exc.message) from None
    except OSError as exc:
        log.error("could not store an upload: %s", exc)
        raise ApiError(503, f"the server could not store the upload: {exc.strerror or exc}") from None


def _check_upload(
    server: Server, info: ModelZipInfo, upload: uploads.Upload, target: _Target, action: str
) -> _Checked:
    fields = upload.fields
    model_type = target.model_type or info.model_type
    if target.model is not None and target.model.type != model_type:
        raise ApiError(
            400, f"model {target.model.id!r} is a {target.model.type}; this upload is a {model_type}"
        )
    form_python = _text(fields, "pythonVersion", limit=40)
    python = _python(
        server,
        form_python or str(info.manifest.get("python_version") or ""),
        "pythonVersion" if form_python else "blankly.json python_version",
    )
    schedule = _text(fields, "schedule", limit=200).strip() or _manifest_schedule(info.manifest)
    if model_type != "screener":
        schedule = ""
    elif action != "backtest" and not schedule:
        raise ApiError(
            400,
            "a screener needs a schedule: send cron text in field 'schedule' "
            "or set screener.schedule in blankly.json",
        )
    args = target.backtest_args
    return _Checked(
        info=info,
        model_type=model_type,
        python=python,
        schedule=_check_schedule(schedule) if schedule else None,
        args=_default_args(info.manifest) if args is None else args,
    )


def _record_upload(
    server: Server, user: User, upload: uploads.Upload, target: _Target, checked: _Checked,
    action: str, version_id: str, zip_name: str,
) -> tuple[Model, Version, Optional[Backtest]]:
    """Insert the rows of a placed zip in one transaction: all or nothing."""
    fields, store, manifest = upload.fields, server.store, checked.info.manifest
    name = _text(fields, "name", limit=200).strip()
    if not name and isinstance(manifest.get("name"), str):
        name = manifest["name"].strip()[:200]
    description = _text(fields, "versionDescription") or (
        _text(fields, "backtestDescription") if action == "backtest" else ""
    )
    try:
        with store.transaction():
            model = target.model or store.create_model(
                target.project_id,
                name or "Untitled model",
                checked.model_type,
                _text(fields, "generalDescription") or _text(fields, "description"),
                user.name,
            )
            version = store.add_version(
                model.id,
                version_id=version_id,
                description=description,
                python_version=checked.python,
                sha256=upload.sha256,
                size=upload.size,
                uploaded_by=user.name,
                zip_name=zip_name,
                model_type=checked.model_type,
                schedule=checked.schedule,
                manifest={k: v for k, v in manifest.items() if k not in SECRET_KEYS},
            )
            backtest = None
            if action == "backtest":
                # Checked again here: uploads that passed the early check together must not
                # all join the queue. No await separates this check from the insert.
                _check_queue(server)
                backtest = store.add_backtest(
                    model_id=model.id,
                    version_id=version.id,
                    project_id=model.project_id,
                    args=checked.args,
                    description=_text(fields, "backtestDescription"),
                    plan=target.plan_name,
                )
            elif action == "deploy":
                store.start_deployment(model.id, version.id, target.plan_name)
    except BaseException as exc:  # the caller removes the placed zip
        if isinstance(exc, sqlite3.IntegrityError):
            raise ApiError(409, "the model was changed (deleted?) during the upload; try again") from None
        if isinstance(exc, (OSError, sqlite3.OperationalError)):
            log.error("could not store an upload: %s", exc)
            reason = getattr(exc, "strerror", None) or exc  # the OS's words, without our paths
            raise ApiError(503, f"the server could not store the upload: {reason}") from None
        raise
    return model, version, backtest


async def model_deploy(request: Request, user: User) -> dict[str, Any]:
    return await _accept_upload(request, user, "deploy")


async def model_backtest(request: Request, user: User) -> dict[str, Any]:
    return await _accept_upload(request, user, "backtest")


async def model_upload(request: Request, user: User) -> dict[str, Any]:
    return await _accept_upload(request, user, "upload")


async def backtest_uploaded(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    _check_queue(server)
    fields = await read_fields(request)
    model = _model(server, user, _id(fields, "modelId"), _id(fields, "projectId", required=False))
    version = _version(server, model, _id(fields, "versionId", required=False))
    args = _backtest_args(fields.get("backtestArgs"))
    if args is None:
        args = _default_args(version.manifest)
    plan_name, plan = _plan(server, "backtesting", _text(fields, "plan", limit=100))
    _python(server, version.python_version, "the version's pythonVersion")
    _check_queue(server)  # again: others may have queued while this body was read
    backtest = server.store.add_backtest(
        model_id=model.id,
        version_id=version.id,
        project_id=model.project_id,
        args=args,
        description=_text(fields, "backtestDescription"),
        plan=plan_name,
    )
    _submit_backtest(server, backtest, version, plan, user.id)
    return _success(model, version, backtest.created_at, backtestId=backtest.id)


# -- backtests --------------------------------------------------------------------------


async def backtest_status(request: Request, user: User) -> dict[str, Any]:
    return _backtest(_server(request), user, await read_fields(request)).to_api()


async def backtest_result(request: Request, user: User) -> dict[str, Any]:
    return _backtest(_server(request), user, await read_fields(request)).to_api(with_result=True)


async def backtest_logs(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    fields = await read_fields(request)
    backtest = _backtest(server, user, fields)
    out = read_log(server.runner.backtest_log(backtest.id), _offset(fields))
    # Complete once the run has finished and the reader has every byte of it.
    out["complete"] = backtest.finished and out["offset"] >= out["size"]
    return out


async def backtest_cancel(request: Request, user: User) -> dict[str, Any]:
    server = _server(request)
    backtest = _backtest(server, user, await read_fields(request))
    if not backtest.finished:
        known = await anyio.to_thread.run_sync(server.runner.cancel_backtest, backtest.id)
        if not known:  # the runner has no such run: nothing can finish it now
            server.store.update_backtest(
                backtest.id,
                {"status": "cancelled", "error": "cancelled by the user", "ended_at": time.time()},
            )
    return server.store.get_backtest(user.id, backtest.id).to_api()  # type: ignore[union-attr]


# -- errors -----------------------------------------------------------------------------


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
    Route("/backtest/status", authed(backtest_status), methods=["GET"]),
    Route("/backtest/result", authed(backtest_result), methods=["GET"]),
    Route("/backtest/logs", authed(backtest_logs), methods=["GET"]),
    Route("/backtest/cancel", authed(backtest_cancel), methods=["POST"]),
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
