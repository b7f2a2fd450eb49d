"""Names the script uses but nothing defines, found with ``symtable`` (the compiler's own
scope analysis) and explained: which cell does define it, or which IPython syntax did."""
from __future__ import annotations

import builtins
import re
import symtable
from typing import Optional, Sequence

from .cells import Cell, CellChoice, cell_label, label
from .ipython import DEPLOY_MAGIC, IPYTHON_NAMES, Stripped
from .result import ExportedScript, Segment, where
from .selection import Plan

_BUILTINS = frozenset(dir(builtins))
MODULE_DUNDERS = frozenset(
    {"__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__",
     "__annotations__", "__cached__", "__path__", "__class__", "__debug__"}
)
_STAR_IMPORT = re.compile(r"^[ \t]*from[ \t]+\S+[ \t]+import[ \t]+\*", re.M)

# Symbol objects come from SymbolTable.lookup, which scans every child scope for
# each name (to answer is_namespace): quadratic on a long script, whose module
# scope holds thousands of names and functions. So each scope's flags are read
# once, tested as the public predicates test them.
_BINDS = symtable.DEF_LOCAL | symtable.DEF_IMPORT | symtable.DEF_PARAM  # is_assigned/_imported/_parameter
_GLOBAL_SCOPES = (symtable.GLOBAL_IMPLICIT, symtable.GLOBAL_EXPLICIT)  # is_global


def _scope_flags(tb: symtable.SymbolTable) -> dict[str, int]:
    """{name: flags} of one scope, from CPython's table (a private attribute, there since
    Python 2); should it ever move, the same answers rebuilt from the public predicates."""
    flags = getattr(getattr(tb, "_table", None), "symbols", None)
    if isinstance(flags, dict):
        return flags
    return {
        s.get_name(): (symtable.DEF_LOCAL if s.is_assigned() or s.is_imported() or s.is_parameter() else 0)
        | (symtable.USE if s.is_referenced() else 0)
        | (symtable.GLOBAL_EXPLICIT << symtable.SCOPE_OFF if s.is_global() else 0)
        for s in tb.get_symbols()
    }


def scope_names(table: symtable.SymbolTable) -> tuple[set[str], dict[str, None]]:
    """(names bound anywhere, names read as globals) over all scopes; order kept for reporting.

    Linear in the script's size: each scope's flags and children are read once."""
    bound: set[str] = set()
    loaded: dict[str, None] = {}
    stack = [table]
    while stack:
        tb = stack.pop()
        children = tb.get_children()
        # is_namespace: a child scope has that name (a def or class is DEF_LOCAL too; this
        # also counts "listcomp", "genexpr"..., exactly as Symbol.is_namespace does)
        nested = {child.get_name() for child in children}
        module = tb.get_type() == "module"
        for name, flags in _scope_flags(tb).items():
            if flags & _BINDS or name in nested:
                bound.add(name)
            if flags & symtable.USE and (
                module or ((flags >> symtable.SCOPE_OFF) & symtable.SCOPE_MASK) in _GLOBAL_SCOPES
            ):
                loaded.setdefault(name, None)
        stack.extend(children)
    return bound, loaded


def _bound_in(text: str) -> set[str]:
    try:
        return scope_names(symtable.symtable(text, "<cell>", "exec"))[0]
    except (SyntaxError, ValueError, RecursionError):
        return set()


def _first_use(segments: Sequence[Segment], name: str) -> Optional[int]:
    """The first script line that seems to use ``name`` (for the message only)."""
    pat = re.compile(r"(?<![\w.])" + re.escape(name) + r"\b")
    for seg in segments:
        if name not in seg.text:
            continue
        for n, line in enumerate(seg.text.split("\n")):
            if not line.lstrip().startswith("#") and pat.search(line):
                return seg.start + n
    return None


def check_names(
    result: ExportedScript,
    table: symtable.SymbolTable,
    segments: list[Segment],
    cells: Sequence[Cell],
    plan: Plan,
    parts: list[tuple[Stripped, Optional[Cell]]],
) -> None:
    """A problem for each name the script reads that nothing in it defines."""
    bound, loaded = scope_names(table)
    undefined = [n for n in loaded if n not in bound and n not in _BUILTINS and n not in MODULE_DUNDERS]
    if not undefined:
        return
    star = _STAR_IMPORT.search(result.text)
    if star:
        line = result.text.count("\n", 0, star.start()) + 1
        result.notes.append(
            f"{where(segments, line)}: `import *` makes the undefined-name check unreliable, so it was skipped"
        )
        return
    removed: dict[str, str] = {}
    for st, c in parts:
        for name, (line, code) in st.removed_bindings.items():
            removed.setdefault(name, f"{cell_label(c) if c else 'the entry point'}, line {line}: `{code}`")
    defs: Optional[dict[str, list[CellChoice]]] = None
    for name in undefined:
        use = _first_use(segments, name)
        at = where(segments, use) if use else "the script"
        if name not in removed and name not in IPYTHON_NAMES and defs is None:
            defs = _definitions(cells, plan)
        result.problems.append(f"{at}: {_explain(name, removed, defs or {}, cells, plan)}")


def _explain(
    name: str, removed: dict[str, str], defs: dict[str, list[CellChoice]], cells: Sequence[Cell], plan: Plan
) -> str:
    if name in removed:
        return (
            f"`{name}` is used, but its only definition ({removed[name]}) is IPython syntax "
            "that a script cannot run; compute it in plain Python instead"
        )
    if name in IPYTHON_NAMES:
        return f"`{name}` exists only inside IPython/Jupyter; remove it from the exported code" + (
            " (or `from IPython.display import display`)" if name == "display" else ""
        )
    found = defs.get(name)
    if found:
        who = ", ".join(f"{label(ch.index, ch.id)} ({ch.reason})" for ch in found[:3])
        fix = (
            "choose that cell too"
            if plan.selection == "explicit"
            else "tag it `blankly` or make `#| blankly` its first line (and remove any skip mark)"
        )
        return f"`{name}` is not defined in the exported code; it is defined in {who}, which is not exported: {fix}"
    empty = not any(c.cell_type == "code" and c.source.strip() for c in cells)
    return f"`{name}` is used but never defined or imported anywhere in the notebook" + (
        # the usual cause: cells typed but the notebook never saved
        " (it has no code cells: add your strategy's cells and save it)" if empty else ""
    )


def _definitions(cells: Sequence[Cell], plan: Plan) -> dict[str, list[CellChoice]]:
    """Which cells that were NOT taken define which names (the slow path, errors only)."""
    by_index = {ch.index: ch for ch in plan.choices}
    found: dict[str, list[CellChoice]] = {}
    for pos, st in plan.stripped.items():
        ch = by_index.get(cells[pos].index)
        if ch is None or ch.exported or st.dropped or st.magic == DEPLOY_MAGIC:
            continue
        for name in _bound_in(st.text):
            found.setdefault(name, []).append(ch)
    return found
