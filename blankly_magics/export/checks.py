"""The script, checked against the cells it came from: syntax, top-level ``await``,
undefined names; then what it imports, the data files it names and secret-looking literals."""
from __future__ import annotations

import re
import symtable
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .cells import Cell
from .ipython import Stripped
from .names import check_names
from .result import ExportedScript, Segment, where
from .scan import scan_segment
from .selection import Plan

_TOP_AWAIT = re.compile(r"^(?:[A-Za-z_][\w.,\[\] \t]*=[ \t]*)?await\b|^async[ \t]+(?:for|with)\b", re.M)


@dataclass
class ScriptSource:
    """Where the script came from, for naming each problem's cell and explaining it."""

    segments: list[Segment]
    cells: Sequence[Cell]
    plan: Plan
    parts: list[tuple[Stripped, Optional[Cell]]]  # the cells taken (and the entry point, with no cell)
    allowed: dict[str, str] = field(default_factory=dict)  # names made at run time -> where the user said so


def check_script(result: ExportedScript, source: ScriptSource) -> None:
    """Add each problem to ``result``, naming its cell and line; nothing is raised."""
    segments = source.segments
    try:
        table = symtable.symtable(result.text, "<script>", "exec")
    except SyntaxError as exc:
        code = (exc.text or "").strip()
        msg = exc.msg or "invalid syntax"
        shown = f": `{code}`" if code else ""
        result.problems.append(f"{where(segments, exc.lineno)}: syntax error: {msg}{shown}")
        return
    except (ValueError, RecursionError) as exc:
        result.problems.append(f"the script cannot be compiled: {exc}")
        return
    _check_await(result, segments)
    check_names(result, table, source)
    for seg in segments:
        scan_segment(result, seg)


def _check_await(result: ExportedScript, segments: Sequence[Segment]) -> None:
    for seg in segments:
        if "await" not in seg.text and "async" not in seg.text:
            continue
        for m in _TOP_AWAIT.finditer(seg.text):
            line = seg.start + seg.text.count("\n", 0, m.start())
            result.problems.append(
                f"{seg.where(line)}: top-level `await` works in IPython but not in a script; "
                "put it in an `async def main()` and run it with `asyncio.run(main())`"
            )
