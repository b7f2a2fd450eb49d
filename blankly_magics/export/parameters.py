"""The parameters cell: its defaults, and the lines that apply a run's overrides right after it.

As in papermill, one cell holds the strategy's parameters (``#| blankly: parameters``, or
the cell tag ``parameters``) as plain assignments of literals::

    low = 30
    symbol = "GOOG-USD"

The script gets, right after that cell, a few lines that read a run's overrides from the
environment variable ``BLANKLY_PARAMETERS`` (base64 of a JSON object, the encoding the
platform uses for ``BACKTESTING_ARGS``), so all the code below sees them. Run by hand,
without the variable, the script keeps the defaults.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from .cells import Cell, cell_label
from .ipython import Stripped

ENV_VAR = "BLANKLY_PARAMETERS"
EXAMPLE = "`low = 30`"


@dataclass
class Parameters:
    """The parameters cell read: its defaults in order, and what it holds that is not one."""

    index: int  # the cell's position in the notebook
    label: str  # the cell, as messages name it
    defaults: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_parameters(cell: Cell, stripped: Stripped) -> Parameters:
    """The names the cell assigns and their literal values; anything else is a problem naming its line."""
    found = Parameters(cell.index, cell_label(cell))
    try:
        tree = ast.parse(stripped.text)
    except (SyntaxError, ValueError):
        return found  # the script's own check reports it, with its line
    for node in tree.body:
        line = f"{found.label}, line {node.lineno}"
        target = _target(node)
        if target is None:
            code = ast.get_source_segment(stripped.text, node) or type(node).__name__
            found.problems.append(f"{line}: `{code.splitlines()[0][:60]}` is not a plain assignment; the parameters "
                                  f"cell holds only lines like {EXAMPLE} (move other code to the next cell)")
            continue
        value = _literal(node.value)  # type: ignore[union-attr]
        if value is _NOT_LITERAL:
            found.problems.append(f"{line}: the value of `{target}` is not a literal; a parameter is a number, text, "
                                  "True/False/None, or a list or dict of them")
        else:
            found.defaults[target] = value
    return found


def _target(node: ast.stmt) -> Optional[str]:
    """The name a ``name = value`` (or ``name: type = value``) line assigns; None for anything else."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id
    return None


_NOT_LITERAL = object()


def _literal(node: ast.expr) -> Any:
    """The value as JSON carries it (a tuple becomes a list), or _NOT_LITERAL."""
    try:
        value = ast.literal_eval(node)
        return json.loads(json.dumps(value, allow_nan=False))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def injected_lines(cell_number: int, names: list[str]) -> list[str]:
    """The lines right after the parameters cell that apply a run's overrides (nothing by hand)."""
    listed = repr(tuple(names))
    return [
        f"# %% [parameters] a run's own values of cell {cell_number}'s parameters, when it is given some ({ENV_VAR})",
        "def _blankly_parameters(names):",
        "    import base64, json, os",
        f"    given = json.loads(base64.b64decode(os.environ.get({ENV_VAR!r}, '')) or '{{}}')",
        "    unknown = sorted(set(given) - set(names))",
        "    if unknown:",
        f"        raise SystemExit('{ENV_VAR} names ' + ', '.join(unknown)",
        "                         + ', which the parameters cell does not assign')",
        "    return given",
        "",
        "",
        f"globals().update(_blankly_parameters({listed}))",
        "del _blankly_parameters",
    ]
