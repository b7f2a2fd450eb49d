"""Fetching what the server holds about a run and shaping it into result objects."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..hints import NOTEBOOK, Hints
from ..results import BacktestResult, DeployResult
from .logs import backtest_log, model_log, read_all, tail_bytes
from .periods import empty_period_error

if TYPE_CHECKING:
    from ..session import Session


class Versions:
    """Each model's versions as /model/versions lists them, asked of the server once per model."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.known: dict[str, list] = {}

    def of(self, model_id: Optional[str], version_id: Optional[str]) -> dict:
        """The version ({"number", "description", ...}), or {} when it is not listed."""
        if not model_id or not version_id:
            return {}
        if model_id not in self.known:
            self.known[model_id] = list(self.session.client.versions(model_id))
        return next((v for v in self.known[model_id] if v.get("versionId") == version_id), {})


def result_from(session: "Session", payload: dict, hints: Hints = NOTEBOOK, log_tail: str = "",
                versions: Optional[Versions] = None) -> BacktestResult:
    """A BacktestResult from a status or result answer, its whole log and its version's number and
    description fetched when asked for (through ``versions``, to share what it asked)."""
    backtest_id = str(payload.get("backtestId") or payload.get("id") or "")
    source = backtest_log(session, backtest_id)
    known = versions or Versions(session)
    model_id, version_id = payload.get("modelId"), payload.get("versionId")
    return BacktestResult.from_api(payload, log_tail=log_tail, fetch_logs=lambda: read_all(source), commands=hints,
                                   fetch_version=lambda: known.of(model_id, version_id))


def fetch_backtest(session: "Session", backtest_id: str, hints: Hints = NOTEBOOK) -> BacktestResult:
    """A backtest's status and, once it completed, its metrics, account values and trades
    (the end of its log when it failed)."""
    payload = session.client.backtest_result(backtest_id)
    explained = empty_period_error(payload.get("error"), payload.get("args"), hints)
    if explained:  # said once, in the face's words: Blankly's own advice (to="1y") misleads here
        return result_from(session, dict(payload, error=explained), hints)
    tail = tail_bytes(backtest_log(session, backtest_id)) if payload.get("status") == "failed" else ""
    return result_from(session, payload, hints, log_tail=tail)


def deployment_result(
    session: "Session", model_id: str, *, answer: Optional[dict] = None, name: Optional[str] = None,
    hints: Hints = NOTEBOOK,
) -> DeployResult:
    """The live state of a model (after a deploy, ``answer`` carries its version), named."""
    state = session.client.deployment(model_id)
    if name is None:
        name = model_name(session, model_id)
    source = model_log(session, model_id)
    return DeployResult.from_api(answer or {"modelId": model_id}, state, name=name,
                                 fetch_logs=lambda: read_all(source), commands=hints)


def stop_model(session: "Session", model_id: str) -> str:
    """Stop a live model; the line to show."""
    answer = session.client.kill(model_id)
    return f"Model {model_id}: {answer.get('state') or answer.get('status')}"


def model_name(session: "Session", model_id: str) -> Optional[str]:
    """A model's name (None when the server cannot say)."""
    from ..client import DeploymentError

    try:
        return session.client.model_details(model_id).get("name")
    except DeploymentError:
        return None
