"""A backtest, a sweep or a live deployment of a notebook's model, end to end, for every face.

``run`` chooses the target model, builds the model for it, checks the parameter overrides
against its parameters cell, uploads it, remembers the model for the notebook's next run,
and waits: for a backtest's result (or a sweep's), or while a live model starts (and
builds its environment). The magics' ``%%blankly_deploy``, the CLI's
``backtest``/``deploy`` and the panel's buttons all go through it, so they choose, say
and stop alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from ..results import BacktestResult, DeployResult
from ..sweep_result import SweepResult
from . import interrupts
from .build import ModelSource
from .feedback import Feedback
from .fetch import deployment_result, fetch_backtest
from .live import wait_until_started
from .params import ParameterError, check_apart, check_names
from .periods import fill_period
from .sweeps import Sweep, fetch_sweep, wait_for_sweep
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
    parameters: Optional[dict] = None  # overrides of the notebook's parameters cell (a backtest's, or every point's)
    sweep: Optional[Sweep] = None  # a backtest per point of this grid instead of one backtest
    wait: bool = True
    poll: float = 0.5
    timeout: Optional[float] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind != "backtest" and (self.sweep is not None or self.parameters):
            raise ParameterError("parameters and sweeps run backtests: use kind='backtest' (--backtest)")

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
) -> Union[BacktestResult, SweepResult, DeployResult, None]:
    """Run ``source`` as ``request`` says: a BacktestResult (a SweepResult for a sweep), a DeployResult,
    or None when the user stopped it before the server answered (a note says what the server holds)."""
    try:
        target = choose_target(session, feedback, notebook=request.notebook, name=request.name,
                               model=request.model, project=request.project)
        bundle = source.build(feedback, target.model_id, target.project_id)
        check_overrides(bundle, request.parameters, request.sweep)
        feedback.cancel.check()
    except interrupts.STOPS:
        feedback.cancel.request()  # the face can tell the run was stopped
        feedback.note(interrupts.before_upload())
        return None
    what = "deploy" if request.kind == "live" else "backtest"
    if request.sweep is not None:
        what = f"sweep of {request.sweep.size} backtests"
    backtest_args = request.backtest_args
    if request.kind == "backtest":  # no period given: the price file's, when the code reads one
        backtest_args, said = fill_period(backtest_args, bundle)
        if said:
            feedback.note(f"{said} (give another with {feedback.hints.period})")
    feedback.note(f"Uploading to {target.describe()} on {session.url} for a {what}...")
    answer = upload(session, bundle, target, feedback, kind=request.kind, notebook=request.notebook,
                    plan=request.plan, python_version=request.python_version, description=request.description,
                    backtest_args=backtest_args, parameters=request.parameters, sweep=request.sweep)
    if answer is None:
        return None
    model_id = str(answer.get("modelId") or target.model_id or "")
    if request.kind == "live":
        if request.wait:  # while it starts (its environment may be built first)
            wait_until_started(session, model_id, feedback, poll=request.poll, timeout=request.timeout)
        return deployment_result(session, model_id, answer=answer, name=target.name, hints=feedback.hints)
    if request.sweep is not None:
        return _follow_sweep(session, request, answer, model_id, feedback)
    backtest_id = str(answer.get("backtestId"))
    feedback.note(f"Backtest {backtest_id} queued (model {model_id}, version {answer.get('versionId')})")
    if not request.wait:
        feedback.note(f"Not waiting: fetch it with {feedback.hints.result(backtest_id)}")
        return fetch_backtest(session, backtest_id, feedback.hints)
    return wait_for_backtest(session, backtest_id, feedback, poll=request.poll, timeout=request.timeout)


def check_overrides(bundle: Any, parameters: Optional[dict], sweep: Optional[Sweep]) -> None:
    """The overrides and the grid name only what the built model's parameters cell assigns."""
    defaults, cell = getattr(bundle, "parameters", {}), getattr(bundle, "parameters_cell", None)
    check_names(defaults, cell, parameters or {}, "--param")
    if sweep is not None:
        check_names(defaults, cell, sweep.grid, "--sweep")
        check_apart(parameters or {}, sweep.grid)


def _follow_sweep(session: "Session", request: RunRequest, answer: dict, model_id: str, feedback: Feedback
                  ) -> SweepResult:
    sweep_id = str(answer.get("sweepId"))
    feedback.note(f"Sweep {sweep_id} queued: {answer.get('points')} backtests (model {model_id}, "
                  f"version {answer.get('versionId')})")
    if not request.wait:
        feedback.note(f"Not waiting: see it with {feedback.hints.sweep(sweep_id)}")
        return fetch_sweep(session, sweep_id, feedback.hints)
    return wait_for_sweep(session, sweep_id, feedback, timeout=request.timeout)
