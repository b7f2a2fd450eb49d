"""Building the model: the one place the workflow calls the export and bundle pipeline.

Every face builds through :func:`build_model` (and reads notebooks through
:func:`read_notebook`), so the pipeline's imports live here alone; its errors
come out as one :class:`BuildFailed` line, each problem naming its cell.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from ..errors import BlanklyError
from .feedback import Feedback

if TYPE_CHECKING:
    from ..export import Bundle

Source = Union[Sequence[Any], str, Path]  # cells (export.Cell), their sources, or a notebook's path


class BuildFailed(BlanklyError):
    """The model cannot be built (or its notebook or zip cannot be read or written); ``problems`` lists why."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


def _pipeline_errors(exc: BaseException) -> Optional[BuildFailed]:
    """The pipeline's own exceptions as a BuildFailed (None for anything else)."""
    from ..export import BuildError
    from ..export import ExportError

    if isinstance(exc, BuildError):
        problems = [" ".join(str(p).split()) for p in exc.problems] or [str(exc)]
        return BuildFailed("cannot build the model: " + "; ".join(problems), problems)
    if isinstance(exc, ExportError):
        return BuildFailed(str(exc))
    return None


def _calling(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        failed = _pipeline_errors(exc)
        if failed is None:
            raise
        raise failed from None


def read_notebook(path: Union[str, Path]) -> list:
    """Every cell of a saved notebook (``export.Cell``s)."""
    from ..export import read_notebook as read

    return _calling(read, path)


def cells_from_sources(sources: Sequence[str]) -> list:
    """Cells from code texts, as a kernel's input history holds them."""
    from ..export import cells_from_sources as make

    return make(list(sources))


def preview_cells(cells: Sequence[Any]) -> list:
    """Each code cell as a picker shows it: taken by the export rules or not, and why."""
    from ..export import preview_cells as preview

    return preview(cells)


def build_model(source: Source, **options: Any) -> "Bundle":
    """The checked model (``bundle.Bundle``, nothing written yet). ``options`` are the pipeline's:
    entry, notebook_name, base_dir, include, requirements, python_version, allow_keys,
    model_type, schedule, backtest_args, model_id, project_id, select."""
    from ..export import build_bundle

    return _calling(build_bundle, source, **options)


def save_zip(bundle: "Bundle", path: Union[str, Path], option: str = "--save") -> Path:
    """Write the model zip to ``path`` (a name ending in .zip), atomically; ``option`` names it in errors."""
    target = Path(os.path.expanduser(str(path)))
    if target.suffix.lower() != ".zip":
        raise BuildFailed(f"{option} {path}: give a file name ending in .zip, e.g. model.zip")
    return _calling(bundle.write_zip, target)


def saved_notebook(name: Optional[str], edited: Sequence[int]) -> str:
    """Where a build error comes from when the notebook on disk lags what the kernel ran."""
    where = f"In the saved {name or 'notebook'}"
    if not edited:
        return f"{where} (it differs from what you ran: save it with Ctrl-S to build your latest edits)"
    cells = ", ".join(str(index + 1) for index in edited)
    which = f"cell {cells} was" if len(edited) == 1 else f"cells {cells} were"
    return f"{where} ({which} edited since it was saved: save it with Ctrl-S to build what you ran)"


def python_version(value: Optional[str]) -> Optional[str]:
    """``--python`` checked: a version like 3.11, or None for the running interpreter's."""
    if value is None:
        return None
    if not re.fullmatch(r"3\.\d{1,2}", value.strip()):
        raise BuildFailed(f"--python takes a version like 3.11, not {value!r}")
    return value.strip()


@dataclass
class ModelSource:
    """What a model is built from: everything but the target's ids, which the flow adds."""

    cells: Source
    entry: Optional[str] = None  # the entry point's code (the %%blankly_deploy cell's body)
    notebook_name: Optional[str] = None
    base_dir: Optional[Path] = None
    include: Sequence[Union[str, Path]] = ()
    requirements: Optional[str] = None
    python_version: Optional[str] = None
    backtest_args: Optional[dict] = None
    select: Optional[Sequence[int]] = None  # exactly these cells, whatever their tags
    save: Optional[str] = None  # also write the zip here
    show_summary: bool = True  # say what went into the model
    extra: dict = field(default_factory=dict)  # more build options (model_type, schedule, allow_keys)
    stale_note: Optional[str] = None  # the saved notebook differs from what the kernel ran (locate.py)
    edited: Sequence[int] = ()  # which of its cells were edited (and run) since it was saved

    def build(self, feedback: Feedback, model_id: Optional[str] = None, project_id: Optional[str] = None) -> "Bundle":
        try:
            bundle = build_model(
                self.cells, entry=self.entry, notebook_name=self.notebook_name, base_dir=self.base_dir,
                include=list(self.include), requirements=self.requirements, python_version=self.python_version,
                backtest_args=self.backtest_args, model_id=model_id, project_id=project_id, select=self.select,
                **self.extra,
            )
        except BuildFailed as exc:
            if self.stale_note:  # the error quotes the file, not what is on the user's screen: say so
                raise BuildFailed(f"{saved_notebook(self.notebook_name, self.edited)}: {exc}", exc.problems) from None
            raise
        if self.stale_note:
            feedback.note(f"Note: {self.stale_note}")
        if self.show_summary:
            feedback.note(bundle.summary())
        if self.save:
            feedback.note(f"Saved the model zip to {save_zip(bundle, self.save)}")
        return bundle
