"""What ``export_script`` returns: the script, where each of its lines came from, and
everything learned on the way (imports, data paths, notes, warnings, problems)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from .cells import Cell, CellChoice, CellRef


@dataclass(frozen=True)
class ImportRef:
    module: str  # dotted name as written ("yaml", "sklearn.linear_model")
    optional: bool  # inside try/except ImportError or `if TYPE_CHECKING:`
    where: str  # "cell 3 (id ab12), line 2"
    deferred: bool = False  # inside a function of a local module: only needed if the model calls it

    @property
    def top(self) -> str:
        return self.module.split(".", 1)[0]


@dataclass
class Segment:
    """One cell's text in the script, so a script line can be named by its cell and line."""

    start: int  # first script line (1-based)
    text: str
    label: str  # "cell 3 (id ab12)" or "the entry point"
    cell: Optional[Cell]
    offset: int = 0  # script line `start` is line `offset + 1` of the cell

    def where(self, line: int) -> str:
        return f"{self.label}, line {line - self.start + 1 + self.offset}"


def segment_at(segments: Sequence[Segment], line: int) -> Optional[Segment]:
    found = None
    for seg in segments:
        if seg.start <= line:
            found = seg
        else:
            break
    return found


def where(segments: Sequence[Segment], line: Optional[int]) -> str:
    """A script line as a person finds it: the cell (or the entry point) and its line there."""
    seg = segment_at(segments, line or 0)
    if seg is None or line is None:
        return f"script line {line}"
    return seg.where(line)


@dataclass
class ExportedScript:
    """The script and everything learned while making it."""

    text: str
    selection: str  # "marked" | "all" | "explicit"
    choices: list[CellChoice]  # every code cell, taken or not
    cells: list[CellRef]  # the taken ones, in order
    has_entry: bool
    entry_from: Optional[str]  # what runs as `__main__`, for the summary
    imports: list[ImportRef] = field(default_factory=list)
    paths: list[tuple[str, str]] = field(default_factory=list)  # (string literal, where)
    pip_requirements: list[tuple[str, str]] = field(default_factory=list)  # (requirement, where)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)  # the parameters cell's defaults, in order
    parameters_cell: Optional[str] = None  # that cell, as messages name it (None: there is none)
