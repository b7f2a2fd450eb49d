"""An uploaded zip becomes a new version: receive, check, place for good, record.

Uploads are received (in memory while small, else into a temp file) and checked,
then written, fsynced and renamed into ``versions/``, then recorded in one
transaction; a failure at any point removes the file again, so it leaves neither
a row nor a file (startup sweeps what a killed process left).
"""
from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import anyio.to_thread
from starlette.requests import Request

from . import uploads
from .checks import (
    check_parameter_names,
    check_schedule,
    choose_plan,
    choose_python,
    field_model_type,
    manifest_schedule,
    parse_backtest_args,
    parse_parameters,
)
from .web import ApiError, field_flag, field_id, field_text, server_of
from .jobs import accepted, check_queue, check_sweeps, live_job, start_live, submit_backtest, submit_sweep
from .owned import owned_model, owned_project
from .state import Server
from .store import VERSIONS_DIR, Backtest, Model, Sweep, User, Version, new_id
from .sweep_checks import SweepFields, sweep_fields
from .zipcheck import ModelZipInfo, ZipRejected, ZipTooLarge, inspect_model_zip

SECRET_KEYS = ("api_key", "api_pass")  # blankly.json may hold the project's keys: not copied
INLINE_ENTRIES = 256  # a small zip within these limits is checked on the event loop
INLINE_UNPACKED = 4 << 20

log = logging.getLogger("blankly_magics.server")


@dataclass
class _Target:
    """Where an upload goes, checked before its zip is opened."""

    project_id: str
    model: Optional[Model]
    plan_name: str
    plan: dict[str, Any]
    model_type: str
    backtest_args: Optional[dict[str, Any]]
    parameters: dict[str, Any] = field(default_factory=dict)  # a backtest's overrides of the parameters cell
    sweep: Optional[SweepFields] = None  # what a sweep varies


def _upload_target(server: Server, user: User, fields: dict[str, Any], action: str) -> _Target:
    backtests = action in ("backtest", "sweep")
    plan_kind = "backtesting" if backtests else "live"
    plan_name, plan = choose_plan(server, plan_kind, field_text(fields, "plan", limit=100))
    project_id = field_id(fields, "projectId", required=False) or user.id
    if project_id != user.id:  # (the personal project, whose id is the user's, always exists)
        owned_project(server, user, project_id)
    model_id = field_id(fields, "modelId", required=False)
    create_new = field_flag(fields, "createNew")
    model = None
    if model_id:
        if create_new:
            raise ApiError(
                400,
                "createNew=true makes a new model but modelId was given too; leave out modelId "
                "to create a model, or createNew to add a version to that model",
            )
        model = owned_model(server, user, model_id, project_id)
        project_id = model.project_id
    elif create_new is False:
        raise ApiError(
            400,
            "createNew is false but no modelId was given: send the modelId to add a version to, "
            "or createNew=true to create a model",
        )
    args = parse_backtest_args(fields.get("backtestArgs")) if backtests else None
    target = _Target(project_id, model, plan_name, plan, field_model_type(fields), args)
    if action == "backtest":
        target.parameters = parse_parameters(fields.get("parameters"))
    elif action == "sweep":
        target.sweep = sweep_fields(fields)
    return target


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


async def accept_upload(request: Request, user: User, action: str) -> dict[str, Any]:
    """deploy, backtest, sweep and upload: store the zip as a new version, then run it.

    Only what waits for the disk leaves the event loop: writing the zip for good
    (create, write, fsync, rename) on the server's writer thread, and checking a
    large zip on a worker thread. The rest is CPU work that holds the GIL wherever it
    runs: here it costs no thread hand-offs (several per upload, measured as the
    loop waiting for the GIL), and SQLite's commit does not wait for the disk
    (WAL, synchronous=NORMAL).
    """
    server = server_of(request)
    if action == "backtest":
        check_queue(server)
    elif action == "sweep":
        check_sweeps(server)
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
        model, version, backtest, sweep = _record_upload(
            server, user, upload, target, checked, action, version_id, zip_name
        )
    except BaseException:
        _remove_unrecorded(final)  # placed, but no row points to it (cancelled, refused)
        raise
    finally:
        upload.discard()  # whatever is left of a refused upload
    if sweep is not None:
        submit_sweep(server, sweep[0], sweep[1], version, target.plan, user.id)
        return accepted(model, version, version.created_at, **sweep_answer(*sweep))
    if backtest is not None:
        submit_backtest(server, backtest, version, target.plan, user.id)
        return accepted(model, version, version.created_at, backtestId=backtest.id)
    if action == "deploy":
        await start_live(server, live_job(server, model, version, target.plan_name, user.id))
    return accepted(model, version, version.created_at)


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


def default_args(manifest: dict[str, Any]) -> dict[str, Any]:
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
    form_python = field_text(fields, "pythonVersion", limit=40)
    python = choose_python(
        server,
        form_python or str(info.manifest.get("python_version") or ""),
        "pythonVersion" if form_python else "blankly.json python_version",
    )
    schedule = field_text(fields, "schedule", limit=200).strip() or manifest_schedule(info.manifest)
    if model_type != "screener":
        schedule = ""
    elif action != "backtest" and not schedule:
        raise ApiError(
            400,
            "a screener needs a schedule: send cron text in field 'schedule' "
            "or set screener.schedule in blankly.json",
        )
    args = target.backtest_args
    check_parameter_names(info.manifest, target.parameters, "parameters")
    if target.sweep is not None:
        target.sweep.check_names(info.manifest)
    return _Checked(
        info=info,
        model_type=model_type,
        python=python,
        schedule=check_schedule(schedule) if schedule else None,
        args=default_args(info.manifest) if args is None else args,
    )


def _record_upload(
    server: Server, user: User, upload: uploads.Upload, target: _Target, checked: _Checked,
    action: str, version_id: str, zip_name: str,
) -> tuple[Model, Version, Optional[Backtest], Optional[tuple[Sweep, list[Backtest]]]]:
    """Insert the rows of a placed zip in one transaction: all or nothing."""
    fields, store, manifest = upload.fields, server.store, checked.info.manifest
    name = field_text(fields, "name", limit=200).strip()
    if not name and isinstance(manifest.get("name"), str):
        name = manifest["name"].strip()[:200]
    description = field_text(fields, "versionDescription") or (
        field_text(fields, "backtestDescription") if action == "backtest" else ""
    )
    try:
        with store.transaction():
            model = target.model or store.create_model(
                target.project_id,
                name or "Untitled model",
                checked.model_type,
                field_text(fields, "generalDescription") or field_text(fields, "description"),
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
            backtest, sweep = None, None
            if action == "sweep" and target.sweep is not None:
                check_sweeps(server)  # again, with no await since the early check (as the queue below)
                sweep = record_sweep(store, model, version, target.sweep, checked.args,
                                     field_text(fields, "description") or field_text(fields, "backtestDescription"),
                                     target.plan_name)
            elif action == "backtest":
                # Checked again here: uploads that passed the early check together must not
                # all join the queue. No await separates this check from the insert.
                check_queue(server)
                backtest = store.add_backtest(
                    model_id=model.id,
                    version_id=version.id,
                    project_id=model.project_id,
                    args=checked.args,
                    description=field_text(fields, "backtestDescription"),
                    plan=target.plan_name,
                    parameters=target.parameters,
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
    return model, version, backtest, sweep


def record_sweep(store: Any, model: Model, version: Version, sweep: SweepFields, args: dict[str, Any],
                 description: str, plan_name: str) -> tuple[Sweep, list[Backtest]]:
    """The sweep's rows and one backtest row per point (inside the caller's transaction, if any)."""
    return store.add_sweep(
        model_id=model.id, version_id=version.id, project_id=model.project_id, grid=sweep.grid,
        parameters=sweep.parameters, objective=sweep.objective.to_dict(), constraints=sweep.constraints,
        args=args, description=description, plan=plan_name,
    )


def sweep_answer(sweep: Sweep, points: list[Backtest]) -> dict[str, Any]:
    """What a sweep's creation answers besides the model and version."""
    return {"sweepId": sweep.id, "points": len(points), "backtestIds": [p.id for p in points]}
