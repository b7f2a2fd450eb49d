"""A backtest or a live deployment of a notebook's model, end to end, for every face.

``run`` chooses the target model, builds the model for it, uploads it, remembers the
model for the notebook's next run, and waits: for a backtest's result, or while a live
model starts (and builds its environment). The magics' ``%%blankly_deploy``, the CLI's
``backtest``/``deploy`` and the panel's buttons all go through it, so they choose, say
and stop alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from ..results import BacktestResult, DeployResult
from . import interrupts
from .build import ModelSource
from .feedback import Feedback
from .fetch import deployment_result, fetch_backtest
from .live import wait_until_started
from .periods import fill_period
from .target import choose_target
from .upload import upload
from .waiting import wait_for_backtest

if TYPE_CHECKING:
    from ..config import BlanklyConfig
    from ..session import Session

KINDS = ("backtest", "live")


@dataclass
class RunRequest:
    """What to run and where: every field but ``kind`` has a default (the config's, or the server's)."""

    kind: str = "backtest"  # "backtest" or "live"
    notebook: Optional[Path] = None  # remembers the model (None: the working folder, by kernel history)
    name: Optional[str] = None  # a new model's name (default: the notebook's file name)
    model: Optional[str] = None  # an existing model, by id or name
    project: Optional[str] = None  # by id or name (default: the personal project)
    plan: Optional[str] = None
    python_version: Optional[str] = None
    description: str = ""  # the backtest's description, or the live version's
    backtest_args: Optional[dict] = None  # None: the model's blankly.json decides
    wait: bool = True
    poll: float = 0.5
    timeout: Optional[float] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")

    @classmethod
    def configured(cls, config: "BlanklyConfig", kind: str, **given: object) -> "RunRequest":
        """A request whose unset plan, python, wait, poll and timeout come from ``config``."""
        chosen = {key: value for key, value in given.items() if value is not None}
        chosen.setdefault("plan", config.plan(kind))
        chosen.setdefault("python_version", config.python)
        chosen.setdefault("wait", config.wait)
        chosen.setdefault("poll", config.poll_interval)
        chosen.setdefault("timeout", config.timeout)
        return cls(kind=kind, **chosen)  # type: ignore[arg-type]


def run(
    session: "Session", request: RunRequest, source: ModelSource, feedback: Feedback
) -> Union[BacktestResult, DeployResult, None]:
    """Run ``source`` as ``request`` says: a BacktestResult, a DeployResult, or None when the user
    stopped it before the server answered (a note says what the server holds)."""
    try:
        target = choose_target(session, feedback, notebook=request.notebook, name=request.name,
                               model=request.model, project=request.project)
        bundle = source.build(feedback, target.model_id, target.project_id)
        feedback.cancel.check()
    except interrupts.STOPS:
        feedback.cancel.request()  # the face can tell the run was stopped
        feedback.note(interrupts.before_upload())
        return None
    what = "backtest" if request.kind == "backtest" else "deploy"
    backtest_args = request.backtest_args
    if request.kind == "backtest":  # no period given: the price file's, when the code reads one
        backtest_args, said = fill_period(backtest_args, bundle)
        if said:
            feedback.note(f"{said} (give another with {feedback.hints.period})")
    feedback.note(f"Uploading to {target.describe()} on {session.url} for a {what}...")
    answer = upload(session, bundle, target, feedback, kind=request.kind, notebook=request.notebook,
                    plan=request.plan, python_version=request.python_version, description=request.description,
                    backtest_args=backtest_args)
    if answer is None:
        return None
    model_id = str(answer.get("modelId") or target.model_id or "")
    if request.kind == "live":
        if request.wait:  # while it starts (its environment may be built first)
            wait_until_started(session, model_id, feedback, poll=request.poll, timeout=request.timeout)
        return deployment_result(session, model_id, answer=answer, name=target.name, hints=feedback.hints)
    backtest_id = str(answer.get("backtestId"))
    feedback.note(f"Backtest {backtest_id} queued (model {model_id}, version {answer.get('versionId')})")
    if not request.wait:
        feedback.note(f"Not waiting: fetch it with {feedback.hints.result(backtest_id)}")
        return fetch_backtest(session, backtest_id, feedback.hints)
    return wait_for_backtest(session, backtest_id, feedback, poll=request.poll, timeout=request.timeout)
