"""Sending a built model to the server, with progress, and what a stop in the middle means.

An upload to a NEW model is noted in the notebook's memory before it is sent, and
the model it made is remembered once the answer comes; the stages of a stop are
those of :mod:`.interrupts`. The zip is written to a temporary file and streamed
from disk (never held in memory twice); it is gone when the upload returns.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from . import interrupts
from .feedback import Feedback, Interrupted
from .lookup import choose_plan, find_uploaded_model, model_id_of
from .memory import Memory
from .target import Target, remember

if TYPE_CHECKING:
    from ..export import Bundle
    from ..session import Session
    from .sweeps import Sweep

STOP_GRACE = 10.0  # seconds a stopped upload has to notice it (its next chunk raises)


@contextmanager
def zip_on_disk(bundle: "Bundle") -> Iterator[Path]:
    """The bundle written to a temp zip, removed afterwards."""
    fd, name = tempfile.mkstemp(prefix="blankly_model_", suffix=".zip")
    os.close(fd)
    path = Path(name)
    try:
        bundle.write_zip(path)
        yield path
    finally:
        try:
            path.unlink()
        except OSError:
            pass


class _Watch:
    """The client's progress callback: forwards to the face, stops a body when asked,
    and knows whether the whole body was read (an upload the server may then hold)."""

    def __init__(self, feedback: Feedback) -> None:
        self.feedback = feedback
        self.complete = False

    def __call__(self, sent: int, total: int) -> None:
        # Raising here keeps the chunk just read from being sent: a stopped body never completes.
        self.feedback.cancel.check()
        if self.feedback.progress is not None:
            self.feedback.progress(sent, total)
        if total and sent >= total:
            self.complete = True


def upload(
    session: "Session",
    bundle: "Bundle",
    target: Target,
    feedback: Feedback,
    *,
    kind: str,
    notebook: Optional[Path] = None,
    plan: Optional[str] = None,
    python_version: Optional[str] = None,
    description: str = "",
    backtest_args: Optional[dict] = None,
    parameters: Optional[dict] = None,
    sweep: Optional["Sweep"] = None,
) -> Optional[dict]:
    """Send ``bundle`` to ``target`` for a ``kind`` ("backtest" or "live") run, or a ``sweep`` of
    backtests: the server's answer ({"modelId", "versionId", "backtestId" or "sweepId"...}), or None
    when the user stopped it (said in a note)."""
    memory = Memory.of(session, notebook)
    watch = _Watch(feedback)
    job: Optional[interrupts.Background] = None
    try:
        send = _sender(session, bundle, target, kind, plan, python_version, description, backtest_args,
                       parameters, sweep)
        with zip_on_disk(bundle) as path:
            if target.is_new:
                try:
                    memory.remember_pending(target.name, target.project_id, bundle.sha256)
                except OSError:
                    pass  # a read-only folder: the model is still remembered (or said not to be) once it answers
            if feedback.progress is not None:  # opened here, on the face's thread (a widget shows below its cell)
                feedback.progress(0, path.stat().st_size)
            job = interrupts.Background(lambda: send(path, watch), name="blankly-upload")
            try:
                answer = job.result(feedback.cancel)
            except Interrupted:
                return _stopped(session, bundle, target, feedback, kind, memory, watch, job)
    except interrupts.STOPS:
        feedback.cancel.request()  # a body that had just started stops at its next chunk
        if job is not None:
            raise  # a second stop, while the first was being handled
        feedback.note(interrupts.before_upload())  # stopped while the zip was being written
        return None
    model_id = str(answer.get("modelId") or target.model_id or "")
    remember(memory, Target(model_id, target.project_id, target.name), feedback)
    return answer


def _sender(session: "Session", bundle: "Bundle", target: Target, kind: str, plan: Optional[str],
            python_version: Optional[str], description: str, backtest_args: Optional[dict],
            parameters: Optional[dict] = None, sweep: Optional["Sweep"] = None) -> Any:
    """``send(zip_path, progress)``: the client call for this kind of run, its fields checked now."""
    client = session.client
    manifest = getattr(bundle, "manifest", None) or {}
    fields: dict[str, Any] = dict(
        plan=choose_plan(session, kind, plan),
        python_version=python_version or getattr(bundle, "python_version", None),
        model_type=manifest.get("type") or "strategy",
        name=target.name if target.is_new else None,
        model_id=target.model_id,
        project_id=target.project_id,
    )
    if kind == "backtest":
        args = dict(manifest.get("backtest_args") or {}) if backtest_args is None else backtest_args
        if sweep is not None:
            return lambda path, progress: client.create_sweep(path, backtest_args=args, description=description,
                                                              parameters=parameters, progress=progress,
                                                              **sweep.fields(), **fields)
        return lambda path, progress: client.backtest(path, backtest_args=args, description=description,
                                                      parameters=parameters, progress=progress, **fields)
    screener = manifest.get("screener") or {}
    schedule = screener.get("schedule") if manifest.get("type") == "screener" else None
    return lambda path, progress: client.deploy(path, version_description=description, schedule=schedule,
                                                progress=progress, **fields)


def _stopped(session: "Session", bundle: "Bundle", target: Target, feedback: Feedback, kind: str,
             memory: Memory, watch: _Watch, job: interrupts.Background) -> None:
    """Apply the stop policy to an upload: before its last byte, nothing is stored; after, find
    the model it made (named as asked, holding this very zip) and remember it."""
    feedback.cancel.request()  # from here on the body's next chunk raises
    if not watch.complete:
        job.join(STOP_GRACE)
    if not watch.complete:
        feedback.note(interrupts.during_upload())
        return None
    hints = feedback.hints
    if target.model_id:
        feedback.note(interrupts.after_upload_to(target.name, target.model_id, hints))
        return None
    try:
        found = find_uploaded_model(session, target.name, bundle.sha256, target.project_id)
    except (Exception, KeyboardInterrupt):  # the server gone, or a second stop: the next run looks again
        found = None
    if found is None:
        feedback.note(interrupts.after_upload_unknown(target.name, hints))
        return None
    made = Target(model_id_of(found), target.project_id, target.name)
    remember(memory, made, feedback)
    feedback.note(interrupts.after_upload_found(target.name, model_id_of(found), found.get("versionId"), kind, hints))
    return None
