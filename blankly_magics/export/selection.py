"""Which cells go into the script: the ones marked (tag or ``#| blankly``), else every
code cell, or exactly the ones chosen; the ``%%blankly_deploy`` cell is the entry point."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from .cells import Cell, CellChoice, cell_label, first_line
from .directives import CellDirectives, read_directives
from .ipython import DEPLOY_MAGIC, Stripped, strip_ipython


EVERY_CELL = "no cell is marked: every code cell is taken"


@dataclass
class Plan:
    selection: str  # "marked" | "all" | "explicit"
    choices: list[CellChoice]  # every code cell, taken or not
    taken: list[tuple[Cell, Stripped, str]]  # cell, stripped, reason
    stripped: dict[int, Stripped]  # by position in the cell list
    entry_cell: Optional[tuple[Cell, Stripped]]
    problems: list[str]
    notes: list[str]
    allowed: dict[str, str] = field(default_factory=dict)  # name -> the directive that allows it undefined
    dropped: list[tuple[Cell, str]] = field(default_factory=list)  # cells that would be taken, and their cell magic
    parameters_cell: Optional[tuple[Cell, Stripped]] = None  # the parameters cell, when it is taken


def plan_cells(cells: Sequence[Cell], select: Optional[Sequence[int]], entry_given: bool) -> Plan:
    """Choose the cells; ``select`` holds cell positions (``Cell.index``) and overrides the marks."""
    problems: list[str] = []
    code = [(pos, c) for pos, c in enumerate(cells) if c.cell_type == "code"]
    marks: dict[int, CellDirectives] = {}
    allowed: dict[str, str] = {}
    for pos, c in code:
        marks[pos] = found = read_directives(c.source, c.tags)
        problems.extend(f"{cell_label(c)}: {p}" for p in found.problems)
        for name in found.allow_undefined:
            allowed.setdefault(name, f"`#| blankly: allow-undefined` in {cell_label(c)}")
    _one_parameters_cell([c for pos, c in code if marks[pos].parameters and marks[pos].mark != "skip"], problems)
    wanted: set[int] = set()
    if select is not None:
        selection = "explicit"
        wanted = _chosen(cells, select, problems)
    elif any(m.mark == "export" for m in marks.values()):
        selection = "marked"
    else:
        selection = "all"
    plan = Plan(selection, [], [], {}, None, problems, [], allowed)
    for pos, c in code:
        st = strip_ipython(c.source)
        plan.stripped[pos] = st
        ok, reason = _decide(plan, st, marks[pos], pos in wanted, entry_given)
        if st.magic == DEPLOY_MAGIC:
            plan.entry_cell = (c, st)
        if ok and st.dropped:
            ok, reason = False, f"a %%{st.magic} cell, which cannot run in a script"
            plan.notes.append(f"{cell_label(c)}: dropped, a %%{st.magic} cell cannot run in a script")
            plan.dropped.append((c, st.magic))
        if ok:
            plan.taken.append((c, st, reason))
            if marks[pos].parameters and plan.parameters_cell is None:
                plan.parameters_cell = (c, st)
        plan.choices.append(CellChoice(c.index, c.id, first_line(c.source), ok, reason))
    return plan


def _one_parameters_cell(cells: Sequence[Cell], problems: list[str]) -> None:
    if len(cells) > 1:
        which = ", ".join(cell_label(c) for c in cells)
        problems.append(f"{len(cells)} cells are marked as the parameters cell ({which}); mark one: "
                        "a run's overrides are applied right after it")


def _chosen(cells: Sequence[Cell], select: Sequence[int], problems: list[str]) -> set[int]:
    wanted = set()
    by_index = {c.index: (pos, c) for pos, c in enumerate(cells)}
    for i in select:
        if i not in by_index:
            problems.append(f"there is no cell {i + 1} to choose (the notebook has {len(cells)} cells)")
        elif by_index[i][1].cell_type != "code":
            problems.append(f"{cell_label(by_index[i][1])} is a {by_index[i][1].cell_type} cell, not a code cell")
        else:
            wanted.add(by_index[i][0])
    return wanted


def _decide(plan: Plan, st: Stripped, mark: CellDirectives, chosen: bool, entry_given: bool) -> tuple[bool, str]:
    """Is the cell taken, and why (as the panel shows it)."""
    if st.magic == DEPLOY_MAGIC:
        if entry_given:
            return False, "the %%blankly_deploy cell (the given entry point is used instead)"
        return False, "the %%blankly_deploy cell: its body is the entry point"
    if plan.selection == "explicit":
        return (True, "chosen") if chosen else (False, "not chosen")
    if mark.mark == "skip":
        return False, f"skipped by {mark.why}"
    if mark.parameters:  # taken whatever else is marked: a run's overrides are applied after it
        return True, f"the parameters cell ({mark.parameters})"
    if plan.selection == "marked":
        return (True, mark.why) if mark.mark == "export" else (False, "not marked")
    if st.dropped:
        return True, ""  # reported by the caller
    if not st.has_code:
        return False, ("only IPython commands" if st.removed else "empty")
    return True, EVERY_CELL


def nothing_taken(plan: Plan) -> str:
    """Why no cell went into the script, and what to do."""
    if plan.dropped:
        which = ", ".join(cell_label(c) for c, _ in plan.dropped)
        magics = ", ".join(sorted({f"%%{m}" for _, m in plan.dropped}))
        verb = "was" if len(plan.dropped) == 1 else "were"
        what = {"explicit": "chosen ", "marked": "marked "}.get(plan.selection, "")
        return (
            f"no cell to export: the {what}{which} {verb} dropped, because a {magics} cell magic cannot run in "
            f"a script; {'choose' if plan.selection == 'explicit' else 'mark'} cells of plain Python code"
        )
    if plan.selection == "explicit":
        return "no cell to export: choose at least one code cell of the notebook"
    return "no cell to export: mark the strategy cells with the tag `blankly` or a first line `#| blankly`"


def preview_cells(cells: Sequence[Cell]) -> list[CellChoice]:
    """Every code cell with whether the marker rules take it and why (for the panel)."""
    return plan_cells(cells, None, entry_given=False).choices
