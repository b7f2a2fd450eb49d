"""Notebook cells -> one plain Python script that runs without IPython.

Choose the strategy cells (``selection``), comment out IPython syntax
(``ipython``), join the cells under marker comments that name each one, put the
entry point under ``if __name__ == "__main__":``, then check the script
(``checks``): a syntax error or a name nothing defines is reported with the
notebook cell it came from.

Built for speed on large notebooks (a benchmark compares it with nbconvert):
cells without IPython syntax are copied as they are, the script is checked with
``symtable`` (no Python AST objects), and the rest is regular expressions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .cells import Cell, CellRef, cell_label, first_line, label
from .checks import ScriptSource, check_script
from .ipython import (
    DEPLOY_MAGIC,
    DISPLAY_BOUND,
    Stripped,
    is_escape,
    leading_code_line,
    remove_top_ipython,
    strip_ipython,
)
from .lines import START, STRING, line_kinds, split_lines
from .parameters import Parameters, injected_lines, read_parameters
from .pip import pip_requirements
from .result import ExportedScript, Segment
from .selection import Plan, nothing_taken, plan_cells

GENERATOR = "blankly_magics"

_FUTURE = re.compile(r"^from[ \t]+__future__[ \t]+import[ \t]+([\w, \t]+?)[ \t]*(?:#.*)?$", re.M)
_MAIN_BLOCK = re.compile(r"^if[ \t(]+__name__[ \t]*==[ \t]*[\"']__main__[\"']", re.M)
_DEPLOY_LINE = re.compile(r"^\s*%%\s*" + DEPLOY_MAGIC + r"\b")


@dataclass
class _Entry:
    """The code run under ``if __name__ == "__main__":``."""

    stripped: Stripped
    offset: int  # lines of the cell before the body (the %%blankly_deploy line)
    label: str  # for messages: "the entry point", "cell 5 (the %%blankly_deploy cell)"
    source: str  # for the summary: "the given entry point"


@dataclass
class _Draft:
    plan: Plan
    parts: list[tuple[str, Cell, Stripped]]  # (marker, cell, stripped)
    entry: Optional[_Entry]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pips: list[tuple[str, str]] = field(default_factory=list)
    parameters: Optional[Parameters] = None  # the parameters cell, read


def export_script(
    cells: Sequence[Cell],
    *,
    entry: Optional[str] = None,
    notebook_name: Optional[str] = None,
    select: Optional[Sequence[int]] = None,
    allow_undefined: Sequence[str] = (),
) -> ExportedScript:
    """Choose cells, strip IPython syntax, join them into a script and check it.

    ``select`` holds cell positions (``Cell.index``); ``allow_undefined`` names
    made at run time, which the name check lets pass (as the directive
    ``#| blankly: allow-undefined`` does). Problems (syntax errors, undefined
    names, bad directives) are collected in ``.problems``, each naming its cell;
    nothing is raised for them.
    """
    if entry is not None and not entry.strip():
        entry = None
    plan = plan_cells(cells, select, entry_given=entry is not None)
    nb = notebook_name or ""
    parts = [(_marker(c, nb), c, st) for c, st, _ in plan.taken]
    draft = _Draft(plan, parts, None, notes=list(plan.notes), problems=list(plan.problems))
    draft.entry = _entry(draft, entry)
    if plan.parameters_cell is not None:
        draft.parameters = read_parameters(*plan.parameters_cell)
        draft.problems.extend(draft.parameters.problems)
    _harvest_pips(draft, cells)
    for c, st, _ in plan.taken:
        if st.removed:
            shown = ", ".join(f"`{t}`" for _, t in st.removed[:3]) + (" ..." if len(st.removed) > 3 else "")
            draft.notes.append(f"{cell_label(c)}: {len(st.removed)} IPython line(s) commented out: {shown}")
    _remove_ipython_calls(draft)
    text, segments = _assemble(draft, nb)
    result = ExportedScript(
        text=text,
        selection=plan.selection,
        choices=plan.choices,
        cells=[CellRef(c.index, c.id, reason, first_line(c.source)) for c, _, reason in plan.taken],
        has_entry=draft.entry is not None,
        entry_from=_entry_from(draft, segments),
        pip_requirements=draft.pips,
        notes=draft.notes,
        warnings=draft.warnings,
        problems=draft.problems,
        parameters=dict(draft.parameters.defaults) if draft.parameters else {},
        parameters_cell=draft.parameters.label if draft.parameters else None,
    )
    if not plan.taken and (draft.entry is None or (plan.dropped and plan.selection != "all")):
        result.problems.append(nothing_taken(plan))
        return result
    checked = [(st, c) for _, c, st in parts] + ([(draft.entry.stripped, None)] if draft.entry else [])
    allowed = dict(plan.allowed)
    for name in allow_undefined:
        if name.isidentifier():
            allowed.setdefault(name, "--allow-undefined")
        else:
            result.problems.append(f"--allow-undefined {name!r}: not a Python name")
    check_script(result, ScriptSource(segments, cells, plan, checked, allowed))
    return result


def _marker(c: Cell, nb: str) -> str:
    """The comment above a cell's code in the script, pointing back to the notebook cell
    (its number as JupyterLab shows it, and its id for tools)."""
    return f"# %% [cell {c.number}" + (f", id {c.id}]" if c.id else "]") + (f" {nb}" if nb else "")


def _entry(draft: _Draft, given: Optional[str]) -> Optional[_Entry]:
    """The given entry code, else the body of the notebook's %%blankly_deploy cell."""
    if given is not None:
        st, offset = _entry_stripped(given)
        found = _Entry(st, offset, "the entry point", "the given entry point")
    elif draft.plan.entry_cell is not None:
        c, _ = draft.plan.entry_cell
        st, offset = _entry_stripped(c.source)
        found = _Entry(st, offset, f"{label(c.index)} (the %%blankly_deploy cell)",
                       f"the %%blankly_deploy cell ({label(c.index)})")
        draft.notes.append(f"entry point: the body of {found.source}, run under `if __name__ == \"__main__\":`")
    else:
        return None
    if found.stripped.dropped:
        draft.problems.append(
            f"{found.label}: the entry point holds a %%{found.stripped.magic} cell magic, which a script cannot run"
        )
        return None
    if not found.stripped.has_code:
        draft.notes.append(f"{found.label} has no Python code; the script has no entry point")
        return None
    return found


def _entry_stripped(entry: str) -> tuple[Stripped, int]:
    """The entry body, without a leading ``%%blankly_deploy`` line; and that line's offset."""
    lines = split_lines(entry)
    offset = 0
    first = leading_code_line(lines)
    if first >= 0 and _DEPLOY_LINE.match(lines[first]):
        offset = first + 1
        lines = lines[offset:]
    st = strip_ipython("\n".join(lines))
    if st.magic:  # a cell magic inside the entry cannot run either
        st = Stripped(None, "", magic=st.magic, dropped=True, has_code=False)
    return st, offset


def _harvest_pips(draft: _Draft, cells: Sequence[Cell]) -> None:
    """Requirement lines from ``!pip install``: in the cells taken, and (when nothing is
    marked) in the cells that are only IPython commands, where notebooks install packages."""
    plan = draft.plan
    sources: list[tuple[Optional[Cell], Stripped]] = [(c, st) for c, st, _ in plan.taken]
    if plan.selection == "all":
        ipython_only = {ch.index for ch in plan.choices if ch.reason == "only IPython commands"}
        sources += [
            (cells[pos], st) for pos, st in plan.stripped.items() if st.pips and cells[pos].index in ipython_only
        ]
    sources.sort(key=lambda item: item[0].index if item[0] else 0)
    if draft.entry is not None:
        sources.append((None, draft.entry.stripped))
    for c, st in sources:
        for line, cmd in st.pips:
            at = f"{cell_label(c) if c else 'the entry point'}, line {line}"
            reqs, skipped = pip_requirements(cmd)
            draft.pips.extend((r, at) for r in reqs)
            if reqs:
                draft.notes.append(f"{at}: `{cmd}` -> requirements.txt: {', '.join(reqs)}")
            if skipped:
                draft.warnings.append(
                    f"{at}: `{cmd}`: {', '.join(skipped)} not taken into requirements.txt; "
                    "pass the packages it installs with requirements="
                )


def _remove_ipython_calls(draft: _Draft) -> None:
    """Comment out top-level display()/get_ipython() statements."""
    every = [st for _, _, st in draft.parts] + ([draft.entry.stripped] if draft.entry else [])
    if not any("get_ipython" in st.text or "display" in st.text for st in every):
        return
    display_bound = any(DISPLAY_BOUND.search(st.text) for st in every)
    for _, c, st in draft.parts:
        if "get_ipython" in st.text or "display" in st.text:
            gone = remove_top_ipython(st, display_bound)
            if gone:
                shown = ", ".join(f"`{g}`" for g in gone[:3])
                draft.notes.append(f"{cell_label(c)}: commented out {shown} (IPython only)")


def _hoist_future(st: Stripped) -> list[str]:
    """Take ``from __future__`` imports out of a cell (they must open the script)."""
    lines = st.lines if st.lines is not None else split_lines(st.text)
    kinds = line_kinds(lines) if ('"""' in st.text or "'''" in st.text) else None
    features = []
    for i, line in enumerate(lines):
        m = _FUTURE.match(line)
        if m and (kinds is None or kinds[i] == START):
            features.extend(f.strip() for f in m.group(1).split(",") if f.strip())
            lines[i] = f"# [moved to the top of the script] {line}"
    if features:
        st.lines = lines
        st.text = "\n".join(lines)
    return features


def _indent_block(text: str) -> str:
    lines = split_lines(text)
    kinds = line_kinds(lines, is_escape)
    pad = "\t" if any(ln.startswith("\t") for ln in lines) else "    "
    return "\n".join(pad + ln if ln.strip() and k != STRING else ln for ln, k in zip(lines, kinds))


def _assemble(draft: _Draft, nb: str) -> tuple[str, list[Segment]]:
    """The script's text, and where each cell's lines sit in it."""
    features: list[str] = []
    for _, _, st in draft.parts:
        if "__future__" in st.text:
            features.extend(f for f in _hoist_future(st) if f not in features)
    out = [
        f"# Blankly model script generated by {GENERATOR} from {nb or 'notebook cells'}.",
        "# Edit the notebook and build again; each `# %% [cell N]` marker names the cell below it.",
    ]
    if features:
        out.append(f"from __future__ import {', '.join(features)}")
    segments: list[Segment] = []
    for marker, c, st in draft.parts:
        text = st.text.rstrip()
        out += ["", marker]
        segments.append(Segment(len(out) + 1, text, cell_label(c), c))
        out.extend(split_lines(text))
        if draft.parameters is not None and draft.parameters.index == c.index:
            out += [""] + injected_lines(c.number, list(draft.parameters.defaults))
    if draft.entry is not None:
        out += ["", f"# %% [entry point] {draft.entry.source}", 'if __name__ == "__main__":']
        body = _indent_block(draft.entry.stripped.text.rstrip())
        segments.append(Segment(len(out) + 1, body, draft.entry.label, None, draft.entry.offset))
        out.extend(split_lines(body))
    return "\n".join(out) + "\n", segments


def _entry_from(draft: _Draft, segments: Sequence[Segment]) -> Optional[str]:
    """What runs as ``__main__``, for the summary."""
    if draft.entry is not None:
        return f"{draft.entry.source}, under `if __name__ == \"__main__\":`"
    block = next((seg for seg in segments if _MAIN_BLOCK.search(seg.text)), None)
    return f"the `if __name__ == \"__main__\":` block in {block.label}" if block else None
