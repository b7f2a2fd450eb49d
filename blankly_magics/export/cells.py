"""Notebook cells: read from an .ipynb file or a kernel's input history, and named for people.

A cell is named as JupyterLab shows it: its number from 1 (markdown cells count,
as in the status bar's "Cell 9") and its first line of code. Cell ids are for
tools (the script's cell markers, ``select``), never in a message.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .errors import ExportError


LABEL_WIDTH = 40  # how much of a cell's first line names it in a message
# A long string literal with no spaces that is not a path may be a key or a token:
# a label (which lands in errors and logs) shows it as '***'.
_LONG_STRING = re.compile(r"(['\"])([^'\"\s]{12,})(?:\1|\.\.\.$|$)")
_FILE_NAME = re.compile(r"[/\\]|\.[A-Za-z][A-Za-z0-9_]{0,9}$")


@dataclass(frozen=True)
class Cell:
    index: int  # position in the notebook, from 0 (what tools and ``select`` use)
    source: str
    id: Optional[str] = None
    tags: tuple[str, ...] = ()
    cell_type: str = "code"

    @property
    def number(self) -> int:
        """The cell's number as JupyterLab shows it, from 1."""
        return self.index + 1


class _Named:
    """A cell's number and label, for a value that carries its ``index`` and ``first_line``."""

    index: int
    first_line: str

    @property
    def number(self) -> int:
        """The cell's number as JupyterLab shows it, from 1."""
        return self.index + 1

    @property
    def label(self) -> str:
        return label(self.index, self.first_line)


@dataclass(frozen=True)
class CellChoice(_Named):
    """One code cell as the panel shows it: taken or not, and why."""

    index: int
    id: Optional[str]
    first_line: str
    exported: bool
    reason: str


@dataclass(frozen=True)
class CellRef(_Named):
    """A cell that went into the script, and why it was taken."""

    index: int
    id: Optional[str]
    reason: str
    first_line: str = ""


def read_notebook(path: str | Path) -> list[Cell]:
    """All cells of an nbformat-4 notebook, in order (parsed with ``json``, no nbformat)."""
    path = Path(path)
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ExportError(f"no such notebook: {path}") from None
    except IsADirectoryError:
        raise ExportError(f"{path} is a folder, not a notebook file") from None
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        nb = json.loads(raw)
    except UnicodeDecodeError:
        raise ExportError(f"{name} is not a text file; expected a Jupyter notebook (.ipynb)") from None
    except ValueError as exc:
        raise ExportError(f"{name} is not valid JSON ({exc}); expected a Jupyter notebook (.ipynb)") from None
    _check_notebook(name, nb)
    raw_cells = nb.get("cells")
    if not isinstance(raw_cells, list):
        raise ExportError(f"{name}: 'cells' must be a list")
    return [_cell(name, index, cell) for index, cell in enumerate(raw_cells)]


def _check_notebook(name: str, nb: object) -> None:
    if not isinstance(nb, dict) or "cells" not in nb and "worksheets" not in nb:
        raise ExportError(f"{name} is JSON but not a Jupyter notebook (it has no 'cells')")
    major = nb.get("nbformat")
    if major != 4:
        if isinstance(major, int) and major < 4:
            raise ExportError(
                f"{name} is an nbformat {major} notebook; only version 4 is read. "
                "Open and save it in Jupyter (or `jupyter nbconvert --to notebook --inplace`) to upgrade it"
            )
        raise ExportError(f"{name} has nbformat {major!r}; only nbformat 4 notebooks are read")
    lang = _notebook_language(nb.get("metadata"))
    if lang and not lang.startswith(("python", "ipython")):
        raise ExportError(
            f"{name} is not a Python notebook (its language is {lang}); "
            "only Python notebooks can become a Blankly model"
        )


def _cell(name: str, index: int, cell: object) -> Cell:
    if not isinstance(cell, dict):
        raise ExportError(f"{name}: cell {index + 1} is not a JSON object")
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(source)
    if not isinstance(source, str):
        raise ExportError(f"{name}: cell {index + 1} has a source that is neither text nor a list of lines")
    meta = cell.get("metadata")
    tags = meta.get("tags") if isinstance(meta, dict) else None
    cell_id = cell.get("id")
    return Cell(
        index,
        source,
        cell_id if isinstance(cell_id, str) else None,
        tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        str(cell.get("cell_type", "code")),
    )


def _notebook_language(meta: object) -> str:
    if not isinstance(meta, dict):
        return ""
    for key, sub in (("kernelspec", "language"), ("language_info", "name")):
        value = meta.get(key)
        if isinstance(value, dict) and isinstance(value.get(sub), str):
            return value[sub].strip().lower()
    return ""


def cells_from_sources(sources: Sequence[str], *, start: int = 0) -> list[Cell]:
    """Cells from a kernel's input history (no ids, no tags); ``start`` numbers the first one."""
    return [Cell(start + i, src if isinstance(src, str) else str(src)) for i, src in enumerate(sources)]


def first_line(source: str, width: int = 80) -> str:
    """The cell's first line of code (not a ``#|`` directive), cut to ``width`` characters."""
    for line in source.split("\n"):
        s = line.strip()
        if s and not s.startswith("#|"):
            return s if len(s) <= width else s[: width - 3] + "..."
    return ""


def cell_label(cell: Cell) -> str:
    """``cell 9 (`strategy = blankly.Strategy(...`)``: the cell as the user finds it."""
    return label(cell.index, first_line(cell.source, width=1 << 16))


def label(index: int, first: str = "") -> str:
    """A cell named by its number (from 1) and its first line of code, cut to ``LABEL_WIDTH``."""
    first = _LONG_STRING.sub(_masked, first)
    if len(first) > LABEL_WIDTH:
        first = first[: LABEL_WIDTH - 3].rstrip() + "..."
    return f"cell {index + 1} (`{first}`)" if first else f"cell {index + 1}"


def _masked(m: re.Match) -> str:
    return m.group(0) if _FILE_NAME.search(m.group(2)) else f"{m.group(1)}***{m.group(1)}"
