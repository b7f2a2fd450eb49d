"""Choosing the model a run adds a version to, or deciding to make a new one.

In order: the model named with ``--model`` (or picked in the panel); the model this
notebook last ran on this server (unless another name or project was asked for);
the model this notebook's unanswered upload made; else a new model. The last two
are what keeps any face from making a second model of the same name by accident.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..formats import time_text
from .feedback import Feedback
from .lookup import find_uploaded_model, model_id_of, project_id_of, resolve_model, resolve_project
from .memory import Memory

if TYPE_CHECKING:
    from ..session import Session

DEFAULT_NAME = "notebook"  # a new model's name when there is no notebook file to name it after


@dataclass(frozen=True)
class Target:
    """Where a run's version goes: an existing model (``model_id``) or a new one named ``name``."""

    model_id: Optional[str]
    project_id: Optional[str]
    name: str

    @property
    def is_new(self) -> bool:
        return not self.model_id

    def describe(self) -> str:
        return f"model {self.name} ({self.model_id})" if self.model_id else f"a new model {self.name!r}"


def model_name(notebook: Optional[Path], name: Optional[str] = None) -> str:
    """The name a new model gets: the one given, else the notebook's file name without .ipynb."""
    return name or (Path(notebook).stem if notebook else DEFAULT_NAME)


def choose_target(
    session: "Session",
    feedback: Feedback,
    *,
    notebook: Optional[Path] = None,
    name: Optional[str] = None,
    model: Optional[str] = None,
    project: Optional[str] = None,
) -> Target:
    """The target of a run from ``notebook`` (see the module's docstring for the order).

    ``name`` is a new model's name when one was given (else the notebook's); ``model``
    and ``project`` are ids or names as typed."""
    project_id = project_id_of(resolve_project(session, project)) if project else None
    wanted = model_name(notebook, name)
    if model:
        found = resolve_model(session, model, project_id)
        return Target(model_id_of(found), found.get("projectId") or project_id, str(found.get("name") or wanted))
    project_id = _own(session, project_id)
    memory = Memory.of(session, notebook)
    last = _remembered(session, memory, name, project_id, project_named=bool(project))
    if last is not None:
        return last
    made = _made_by_unanswered_upload(session, memory, wanted, project_id, feedback)
    return made or Target(None, project_id, wanted)


def _own(session: "Session", project_id: Optional[str]) -> Optional[str]:
    """A project id with the personal project as None (its id is the user's: the panel names it,
    the magics leave it out), so the two spellings of one project compare equal."""
    return None if not project_id or project_id == session.user_id else project_id


def _remembered(session: "Session", memory: Memory, name: Optional[str], project_id: Optional[str], *,
                project_named: bool) -> Optional[Target]:
    """The model this notebook last ran here, if it still exists and no other name or project was
    asked for (with no project named, the remembered model's own project will do)."""
    from ..client import DeploymentError

    last = memory.model()
    if last is None or (name and name != last.get("name")):
        return None
    if project_named and project_id != _own(session, last.get("projectId")):
        return None
    try:
        details = session.client.model_details(last["modelId"], last.get("projectId"))
    except DeploymentError as exc:  # deleted since (404): a new model
        if exc.status != 404:
            raise
        return None
    return Target(last["modelId"], details.get("projectId") or last.get("projectId"),
                  str(details.get("name") or last.get("name") or name))


def _made_by_unanswered_upload(
    session: "Session", memory: Memory, name: str, project_id: Optional[str], feedback: Feedback
) -> Optional[Target]:
    """The model this notebook's last upload made if its answer never came. The rule: same notebook
    and server, same name and project, and the model holds that exact zip (sha256)."""
    pending = memory.pending()
    if pending is None or pending["name"] != name or _own(session, pending.get("projectId")) != project_id:
        return None
    found = find_uploaded_model(session, name, pending["sha256"], project_id)
    if found is None:
        return None  # the server never stored it: a new model after all
    target = Target(model_id_of(found), project_id, name)
    feedback.note(f"Note: the upload sent at {time_text(pending.get('sentAt'))} that got no answer made "
                  f"{target.describe()} on the server: adding a version to it instead of making a second {name!r}")
    remember(memory, target, feedback)
    return target


def remember(memory: Memory, target: Target, feedback: Feedback) -> None:
    """Record the model for the notebook's next run; a folder that cannot be written only costs a note."""
    if not target.model_id:
        return
    try:
        memory.remember_model(target.model_id, target.project_id, target.name)
    except OSError as exc:
        feedback.note(f"Note: could not remember the model next to the notebook ({exc.strerror or exc})")
