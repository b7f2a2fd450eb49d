"""Names the script uses but nothing defines, found with ``symtable`` (the compiler's own
scope analysis) and explained: which cell does define it, or which IPython syntax did."""
from __future__ import annotations

import builtins
import re
import symtable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from .cells import Cell, CellChoice, cell_label
from .ipython import ANY_NAME, DEPLOY_MAGIC, IPYTHON_NAMES, magic_advice, magic_makes
from .result import ExportedScript, where
from .selection import Plan

if TYPE_CHECKING:
    from .checks import ScriptSource

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


def _first_uses(text: str, names: Sequence[str]) -> dict[str, int]:
    """The script line where each name is first read (for the message only).

    Undefined names are bound in no scope at all, so every read of one is a use."""
    import ast

    wanted = set(names)
    first: dict[str, int] = {}
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return first
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in wanted and isinstance(node.ctx, ast.Load):
            if node.lineno < first.get(node.id, node.lineno + 1):
                first[node.id] = node.lineno
    return first


@dataclass
class _Context:
    """What an undefined name can be explained by."""

    cells: Sequence[Cell]
    plan: Plan
    removed: dict[str, str]  # name -> the IPython line that was its only definition
    defs: Optional[dict[str, list[CellChoice]]] = None  # names defined in cells not taken

    def definitions(self) -> dict[str, list[CellChoice]]:
        if self.defs is None:
            self.defs = _definitions(self.cells, self.plan)
        return self.defs


def check_names(result: ExportedScript, table: symtable.SymbolTable, source: ScriptSource) -> None:
    """A problem for each name the script reads that nothing in it defines; the names the
    user allowed (made at run time) are only noted."""
    bound, loaded = scope_names(table)
    undefined = [n for n in loaded if n not in bound and n not in _BUILTINS and n not in MODULE_DUNDERS]
    allowed, segments = source.allowed, source.segments
    let = [n for n in allowed if n in undefined]
    if let:
        result.notes.append(
            "taken as made at run time: " + ", ".join(f"`{n}` ({allowed[n]})" for n in let)
        )
    undefined = [n for n in undefined if n not in allowed]
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
    for st, c in source.parts:
        for name, (line, code) in st.removed_bindings.items():
            removed.setdefault(name, f"{cell_label(c) if c else 'the entry point'}, line {line}: `{code}`")
    context = _Context(source.cells, source.plan, removed)
    uses = _first_uses(result.text, undefined)
    for name in sorted(undefined, key=lambda n: uses.get(n, 1 << 30)):
        at = where(segments, uses[name]) if name in uses else "the script"
        result.problems.append(f"{at}: {_explain(name, context)}")


def _explain(name: str, ctx: _Context) -> str:
    if name in ctx.removed:
        return (
            f"`{name}` is used, but its only definition ({ctx.removed[name]}) is IPython syntax "
            "that a script cannot run; compute it in plain Python instead"
        )
    if name in IPYTHON_NAMES:
        return f"`{name}` exists only inside IPython/Jupyter; remove it from the exported code" + (
            " (or `from IPython.display import display`)" if name == "display" else ""
        )
    made = _made_by_magic(name, ctx, exact=True)
    if made:
        return made
    found = ctx.definitions().get(name)
    if found:
        who = ", ".join(f"{ch.label} ({ch.reason})" for ch in found[:3])
        fix = (
            "choose that cell too"
            if ctx.plan.selection == "explicit"
            else "tag it `blankly` or make `#| blankly` its first line (and remove any skip mark)"
        )
        return f"`{name}` is not defined in the exported code; it is defined in {who}, which is not exported: {fix}"
    made = _made_by_magic(name, ctx, exact=False)
    if made:
        return made
    if not any(c.cell_type == "code" and c.source.strip() for c in ctx.cells):
        # the usual cause: cells typed but the notebook never saved
        return f"`{name}` is used but never defined or imported anywhere in the notebook (it has no code cells: " \
            "add your strategy's cells and save it)"
    return (
        f"`{name}` is used but never defined or imported anywhere in the notebook; if it is made at run time "
        f"(by a library, or setattr on the module), write `#| blankly: allow-undefined {name}` in a cell "
        f"or pass --allow-undefined {name}"
    )


def _made_by_magic(name: str, ctx: _Context, *, exact: bool) -> Optional[str]:
    """The message for a name a magic makes in the notebook (``exact``: by its own name)."""
    for pos, st in sorted(ctx.plan.stripped.items()):
        for line, magic, text in st.magics:
            made = magic_makes(magic, text)
            if (name in made) if exact else (ANY_NAME in made):
                cell = f"{cell_label(ctx.cells[pos])}, line {line}"
                verb = "makes it" if exact else "may have made it"
                return (
                    f"`{name}` is used but not defined in the exported code; `{text}` ({cell}) {verb} in the "
                    f"notebook, but magics do not run in a script: {magic_advice(magic, name)}"
                )
    return None


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
