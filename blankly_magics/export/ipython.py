"""IPython syntax out of exported code: magics, shell escapes, help, ``display()``.

Each IPython-only line is commented out in place with a note saying why (a
statement stays where a block needs one), so the script keeps the cell's line
numbers. A cell magic whose body is not Python (``%%bash``) drops the cell.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .lines import CONT, ESC_CONT, START, STRING, line_kinds, split_lines
from .pip import PIP_COMMAND

DEPLOY_MAGIC = "blankly_deploy"

# A cheap first look: could this cell hold IPython syntax at all?
_CANDIDATE = re.compile(r"^[ \t]*(?:[%!?]|[A-Za-z_][\w., \t]*=[ \t]*[!%])|\?[ \t]*$", re.M)
_ASSIGN_ESCAPE = re.compile(r"^([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*([!%])(.*)$")
_HELP = re.compile(r"^(?:\?{1,2}[\w.*\[\]()]+|[\w.*\[\]()]+\?{1,2})$")
MAGIC_NAME = re.compile(r"^%{1,2}\s*([\w.]+)")
_CODE_LINE = re.compile(r"^[ \t]*[^\s#]", re.M)

# Cell magics whose body is ordinary Python run in the notebook's namespace:
# keep the body. Every other cell magic (%%bash, %%writefile, %%html...) is dropped.
_KEEP_BODY_CELL_MAGICS = {"time", "capture"}
# %time runs its statement in the namespace; keep the statement.
_KEEP_STATEMENT_LINE_MAGICS = {"time"}
# Names that exist only inside IPython; a script that uses them fails.
IPYTHON_NAMES = {"display", "get_ipython", "In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii", "_", "__", "___"}

_TOP_IPYTHON = re.compile(r"^(?:display|get_ipython)[ \t]*\(|^[A-Za-z_]\w*[ \t]*=[ \t]*get_ipython[ \t]*\(", re.M)
DISPLAY_BOUND = re.compile(
    r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+display\b|^[ \t]*(?:from\b[^\n]*)?\bimport\b[^\n#]*\bdisplay\b"
    r"|^[ \t]*display[ \t]*(?::|=(?!=))",
    re.M,
)


@dataclass
class Stripped:
    """A cell with its IPython syntax commented out, and what was taken out."""

    lines: Optional[list[str]]  # None: the cell is unchanged
    text: str
    magic: str = ""  # the cell magic's name, if the cell is one
    dropped: bool = False
    removed: list[tuple[int, str]] = field(default_factory=list)  # (line, original text)
    pips: list[tuple[int, str]] = field(default_factory=list)  # (line, pip command)
    removed_bindings: dict[str, tuple[int, str]] = field(default_factory=dict)
    magics: list[tuple[int, str, str]] = field(default_factory=list)  # (line, magic name, line text)
    has_code: bool = True


def is_escape(line: str) -> bool:
    """Is this line IPython syntax (a magic, a shell escape, help, ``x = !cmd``)?"""
    s = line.lstrip()
    if not s:
        return False
    c = s[0]
    if c in "%!":
        return True
    if c == "?" or s.endswith("?"):
        return bool(_HELP.match(s.rstrip()))
    return "=" in s and bool(_ASSIGN_ESCAPE.match(s))


def leading_code_line(lines: Sequence[str]) -> int:
    """Index of the first line that is neither blank nor a ``#|`` directive, or -1."""
    for i, line in enumerate(lines):
        s = line.strip()
        if s and not s.startswith("#|"):
            return i
    return -1


def _comment(line: str, note: str) -> str:
    """Comment a line out, keeping a statement in place where a block needs one."""
    body = line.lstrip()
    indent = line[: len(line) - len(body)]
    if indent:
        return f"{indent}pass  # [{note}] {body}"
    return f"# [{note}] {body}"


def strip_ipython(source: str) -> Stripped:
    """Comment out IPython-only lines; classify the cell (cell magic, code or not)."""
    if ("%" not in source and "!" not in source and "?" not in source) or not _CANDIDATE.search(source):
        return Stripped(None, source, has_code=bool(_CODE_LINE.search(source)))
    lines = split_lines(source)
    out = Stripped(lines, source)
    first = leading_code_line(lines)
    if first >= 0 and lines[first].lstrip().startswith("%%"):
        m = MAGIC_NAME.match(lines[first].lstrip())
        out.magic = m.group(1) if m else "?"
        if out.magic == DEPLOY_MAGIC:
            return out
        if out.magic not in _KEEP_BODY_CELL_MAGICS:
            out.dropped = True
            out.has_code = False
            return out
        out.removed.append((first + 1, lines[first].strip()))
        out.magics.append((first + 1, out.magic, lines[first].strip()))
        lines[first] = _comment(lines[first], "removed, cell magic")
    kinds = line_kinds(lines, is_escape)
    for i, line in enumerate(lines):
        if kinds[i] == ESC_CONT:  # the rest of a backslash-continued escape line: a plain comment
            body = line.lstrip()
            lines[i] = f"{line[: len(line) - len(body)]}# {body}"
        elif kinds[i] == START and is_escape(line):
            _strip_line(out, lines, i)
    out.text = "\n".join(lines)
    out.has_code = any(
        k != ESC_CONT and ln.strip() and not ln.lstrip().startswith(("#", "pass  # ["))
        for ln, k in zip(lines, kinds)
    )
    return out


def _strip_line(out: Stripped, lines: list[str], i: int) -> None:
    """Comment out the escape line ``i`` (or keep a ``%time`` statement), recording it in ``out``."""
    line = lines[i]
    s = line.strip()
    out.removed.append((i + 1, s))
    if s[0] in "%!":
        if PIP_COMMAND.match(s):
            out.pips.append((i + 1, s))
            note = "in requirements.txt"
        elif s[0] == "%":
            m = MAGIC_NAME.match(s)
            if m and m.group(1) in _KEEP_STATEMENT_LINE_MAGICS and s[m.end():].strip():
                body = s[m.end():].strip()
                indent = line[: len(line) - len(line.lstrip())]
                tail = "" if body.endswith("\\") else f"  # [removed, IPython %{m.group(1)}]"
                lines[i] = f"{indent}{body}{tail}"
                out.removed.pop()
                return
            if m:
                out.magics.append((i + 1, m.group(1), s))
            note = "removed, IPython magic"
        else:
            note = "removed, shell command"
    elif _HELP.match(s):
        note = "removed, IPython help"
    else:
        m = _ASSIGN_ESCAPE.match(s)
        note = "removed, shell command" if m and m.group(2) == "!" else "removed, IPython magic"
        if m:
            for name in m.group(1).split(","):
                name = name.strip()
                if name.isidentifier():
                    out.removed_bindings.setdefault(name, (i + 1, s))
    lines[i] = _comment(line, note)


def remove_top_ipython(st: Stripped, display_bound: bool) -> list[str]:
    """Comment out top-level ``display(...)`` / ``get_ipython()`` statements; return what went."""
    lines = st.lines if st.lines is not None else split_lines(st.text)
    kinds = line_kinds(lines, is_escape)
    gone = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if kinds[i] == START and _TOP_IPYTHON.match(line) and not (display_bound and line.startswith("display")):
            gone.append(line.strip())
            note = "removed, IPython display" if line.startswith("display") else "removed, IPython call"
            m = re.match(r"^([A-Za-z_]\w*)[ \t]*=", line)
            if m:
                st.removed_bindings.setdefault(m.group(1), (i + 1, line.strip()))
            lines[i] = f"# [{note}] {line}"
            i += 1
            while i < len(lines) and kinds[i] in (CONT, STRING):
                lines[i] = f"# {lines[i]}"
                i += 1
            continue
        i += 1
    if gone:
        st.lines = lines
        st.text = "\n".join(lines)
    return gone


# What a magic does to the notebook's names, and what a script writes instead. A
# magic that may make any name (a star import, a file run in the namespace) is
# named only when nothing else explains an undefined name.
_MAGIC_ADVICE = {
    "capture": "it keeps the cell's output in `{name}`; print or save what the model needs instead",
    "store": "it reads `{name}` from IPython's store; save the value to a file in the model folder "
             "(e.g. `df.to_csv(...)`) and read it in the code",
    "pylab": "it star-imports numpy and matplotlib.pylab; import what you use instead, "
             "e.g. `from matplotlib.pyplot import figure` or `import numpy as np`",
    "run": "it runs a file in the notebook's namespace; import what you use from that file instead",
}
ANY_NAME = "*"


def magic_makes(magic: str, text: str) -> set[str]:
    """The names a magic line makes in the notebook (``ANY_NAME``: it may make any)."""
    words = text.split()[1:]
    names = [w for w in words if not w.startswith("-")]
    if magic == "capture":  # %%capture [--no-stdout ...] [name]
        return set(names[:1])
    if magic == "store" and "-r" in words:  # %store -r [name ...]
        return set(names) or {ANY_NAME}
    if magic in ("pylab", "run"):
        return {ANY_NAME}
    return set()


def magic_advice(magic: str, name: str) -> str:
    return _MAGIC_ADVICE[magic].format(name=name)
