"""Notebook cells -> one plain Python script that runs without IPython.

The pipeline is: read the cells (``read_notebook`` / ``cells_from_sources``),
choose the strategy cells (tags and ``#| blankly`` directives), comment out
IPython syntax line by line, join the cells under marker comments, then check
the script: a syntax error or a name that nothing defines is reported with the
notebook cell it came from.

It is built for speed on large notebooks (a benchmark compares it with
nbconvert): cells without IPython syntax are copied as they are, the script is
checked with ``symtable`` (the compiler's own scope analysis, no Python AST
objects), and the rest is done with regular expressions over the text.
"""
from __future__ import annotations

import builtins
import json
import re
import shlex
import symtable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = [
    "Cell",
    "CellChoice",
    "CellRef",
    "ExportError",
    "ExportedScript",
    "ImportRef",
    "cells_from_sources",
    "export_script",
    "find_imports",
    "preview_cells",
    "read_notebook",
]

GENERATOR = "blankly_magics"
DEPLOY_MAGIC = "blankly_deploy"
EXPORT_TAG = "blankly"
SKIP_TAG = "blankly-skip"


class ExportError(ValueError):
    """The notebook or the arguments cannot be turned into a script."""


@dataclass(frozen=True)
class Cell:
    index: int
    source: str
    id: Optional[str] = None
    tags: tuple[str, ...] = ()
    cell_type: str = "code"


@dataclass(frozen=True)
class CellChoice:
    """One code cell as the panel shows it: taken or not, and why."""

    index: int
    id: Optional[str]
    first_line: str
    exported: bool
    reason: str


@dataclass(frozen=True)
class CellRef:
    """A cell that went into the script, and why it was taken."""

    index: int
    id: Optional[str]
    reason: str


@dataclass(frozen=True)
class ImportRef:
    module: str  # dotted name as written ("yaml", "sklearn.linear_model")
    optional: bool  # inside try/except ImportError or `if TYPE_CHECKING:`
    where: str  # "cell 3 (id ab12), line 2"


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


# --------------------------------------------------------------------------- reading


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
            f"{name} is not a Python notebook (its language is {lang}); only Python notebooks can become a Blankly model"
        )
    raw_cells = nb.get("cells")
    if not isinstance(raw_cells, list):
        raise ExportError(f"{name}: 'cells' must be a list")
    cells = []
    for index, cell in enumerate(raw_cells):
        if not isinstance(cell, dict):
            raise ExportError(f"{name}: cell {index} is not a JSON object")
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        if not isinstance(source, str):
            raise ExportError(f"{name}: cell {index} has a source that is neither text nor a list of lines")
        meta = cell.get("metadata")
        tags = meta.get("tags") if isinstance(meta, dict) else None
        cell_id = cell.get("id")
        cells.append(
            Cell(
                index,
                source,
                cell_id if isinstance(cell_id, str) else None,
                tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
                str(cell.get("cell_type", "code")),
            )
        )
    return cells


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


# --------------------------------------------------------------------------- line scanning

# Kinds of physical lines: where a logical line starts, a continuation (open
# bracket or backslash), a line that begins inside a triple-quoted string, and
# the continuation of an IPython escape line ending in a backslash.
START, CONT, STRING, ESC_CONT = 0, 1, 2, 3

_SCAN = re.compile(r"\\.?|\"\"\"|'''|[\"'#()\[\]{}]")


def _line_kinds(lines: Sequence[str], is_escape: Callable[[str], bool] = lambda s: False) -> list[int]:
    """Classify each line; IPython escape lines are opaque (never parsed as Python)."""
    kinds = []
    depth = 0
    quote = ""
    cont = False
    esc_cont = False
    for line in lines:
        if esc_cont:
            kind = ESC_CONT
        elif len(quote) == 3:
            kind = STRING
        elif quote or depth or cont:
            kind = CONT
        else:
            kind = START
        kinds.append(kind)
        cont = False
        if kind in (START, ESC_CONT) and (esc_cont or is_escape(line)):
            esc_cont = line.rstrip().endswith("\\")
            continue
        esc_cont = False
        for m in _SCAN.finditer(line):
            tok = m.group()
            if quote:
                if tok[0] == "\\":
                    if len(tok) == 1 and len(quote) == 1:
                        cont = True  # a backslash-continued one-quote string
                elif tok[0] == quote[0] and (len(quote) == 1 or tok == quote):
                    quote = ""
                continue
            if tok[0] == "\\":
                cont = cont or len(tok) == 1
            elif tok == "#":
                break
            elif tok[0] in "\"'":
                quote = tok
            elif tok in "([{":
                depth += 1
            elif depth:
                depth -= 1
        if len(quote) == 1 and not cont:
            quote = ""  # an unterminated string ends at the line end (error recovery)
    return kinds


def _split(source: str) -> list[str]:
    if "\r" in source:
        source = source.replace("\r\n", "\n").replace("\r", "\n")
    return source.split("\n")


# --------------------------------------------------------------------------- IPython syntax

# A cheap first look: could this cell hold IPython syntax at all?
_CANDIDATE = re.compile(r"^[ \t]*(?:[%!?]|[A-Za-z_][\w., \t]*=[ \t]*[!%])|\?[ \t]*$", re.M)
_ASSIGN_ESCAPE = re.compile(r"^([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*([!%])(.*)$")
_HELP = re.compile(r"^(?:\?{1,2}[\w.*\[\]()]+|[\w.*\[\]()]+\?{1,2})$")
_MAGIC_NAME = re.compile(r"^%{1,2}\s*([\w.]+)")
_PIP = re.compile(
    r"^[!%]\s*(?:\{[^}]*\}\s+|\S*python[\d.]*\s+)?(?:-m\s+)?(pip3?|conda|mamba|micromamba)\s+install\b(.*)$"
)
_DIRECTIVE = re.compile(r"^#\|\s*blankly(?![\w])(.*)$")
_CODE_LINE = re.compile(r"^[ \t]*[^\s#]", re.M)

# Cell magics whose body is ordinary Python run in the notebook's namespace:
# keep the body. Every other cell magic (%%bash, %%writefile, %%html...) is dropped.
_KEEP_BODY_CELL_MAGICS = {"time", "capture"}
# %time runs its statement in the namespace; keep the statement.
_KEEP_STATEMENT_LINE_MAGICS = {"time"}
# Names that exist only inside IPython; a script that uses them fails.
IPYTHON_NAMES = {"display", "get_ipython", "In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii", "_", "__", "___"}


@dataclass
class _Stripped:
    lines: Optional[list[str]]  # None: the cell is unchanged
    text: str
    magic: str = ""  # the cell magic's name, if the cell is one
    dropped: bool = False
    removed: list[tuple[int, str]] = field(default_factory=list)  # (line, original text)
    pips: list[tuple[int, str]] = field(default_factory=list)  # (line, pip command)
    removed_bindings: dict[str, tuple[int, str]] = field(default_factory=dict)
    has_code: bool = True


def _is_escape(line: str) -> bool:
    s = line.lstrip()
    if not s:
        return False
    c = s[0]
    if c in "%!":
        return True
    if c == "?" or s.endswith("?"):
        return bool(_HELP.match(s.rstrip()))
    return "=" in s and bool(_ASSIGN_ESCAPE.match(s))


def _leading_code_line(lines: Sequence[str]) -> int:
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


def _strip_ipython(source: str) -> _Stripped:
    """Comment out IPython-only lines; classify the cell (cell magic, code or not)."""
    if ("%" not in source and "!" not in source and "?" not in source) or not _CANDIDATE.search(source):
        return _Stripped(None, source, has_code=bool(_CODE_LINE.search(source)))
    lines = _split(source)
    out = _Stripped(lines, source)
    first = _leading_code_line(lines)
    if first >= 0 and lines[first].lstrip().startswith("%%"):
        m = _MAGIC_NAME.match(lines[first].lstrip())
        out.magic = m.group(1) if m else "?"
        if out.magic == DEPLOY_MAGIC:
            return out
        if out.magic not in _KEEP_BODY_CELL_MAGICS:
            out.dropped = True
            out.has_code = False
            return out
        out.removed.append((first + 1, lines[first].strip()))
        lines[first] = _comment(lines[first], "removed, cell magic")
    kinds = _line_kinds(lines, _is_escape)
    esc_note = ""
    for i, line in enumerate(lines):
        kind = kinds[i]
        if kind == ESC_CONT:  # the rest of a backslash-continued escape line: a plain comment
            body = line.lstrip()
            lines[i] = f"{line[: len(line) - len(body)]}# {body}"
            continue
        if kind != START or not _is_escape(line):
            continue
        s = line.strip()
        out.removed.append((i + 1, s))
        if s[0] in "%!":
            pip = _PIP.match(s)
            if pip:
                out.pips.append((i + 1, s))
                esc_note = "in requirements.txt"
            elif s[0] == "%":
                m = _MAGIC_NAME.match(s)
                if m and m.group(1) in _KEEP_STATEMENT_LINE_MAGICS and s[m.end():].strip():
                    body = s[m.end():].strip()
                    indent = line[: len(line) - len(line.lstrip())]
                    tail = "" if body.endswith("\\") else f"  # [removed, IPython %{m.group(1)}]"
                    lines[i] = f"{indent}{body}{tail}"
                    out.removed.pop()
                    continue
                esc_note = "removed, IPython magic"
            else:
                esc_note = "removed, shell command"
        elif _HELP.match(s):
            esc_note = "removed, IPython help"
        else:
            m = _ASSIGN_ESCAPE.match(s)
            esc_note = "removed, shell command" if m and m.group(2) == "!" else "removed, IPython magic"
            if m:
                for name in m.group(1).split(","):
                    name = name.strip()
                    if name.isidentifier():
                        out.removed_bindings.setdefault(name, (i + 1, s))
        lines[i] = _comment(line, esc_note)
    out.text = "\n".join(lines)
    out.has_code = any(
        k != ESC_CONT and ln.strip() and not ln.lstrip().startswith(("#", "pass  # ["))
        for ln, k in zip(lines, kinds)
    )
    return out


def pip_requirements(command: str) -> tuple[list[str], list[str]]:
    """Requirement lines named by ``!pip install ...`` / ``%conda install ...``; and what was not taken."""
    m = _PIP.match(command.strip())
    if not m:
        return [], []
    conda = m.group(1) != "pip" and m.group(1) != "pip3"
    try:
        tokens = shlex.split(m.group(2), comments=True)
    except ValueError:
        tokens = m.group(2).split()
    takes_value = {
        "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
        "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform",
        "--python-version", "--implementation", "--abi", "--trusted-host", "--src",
        "--upgrade-strategy", "--progress-bar", "--log", "--cache-dir", "-e", "--editable",
        "--channel", "-n", "--name", "-p",
    }
    reqs: list[str] = []
    skipped: list[str] = []
    skip_next = False
    for tok in tokens:
        if skip_next:
            skip_next = False
            if skipped and skipped[-1].startswith("-") and " " not in skipped[-1]:
                skipped[-1] += " " + tok
            continue
        if tok in ("&&", "||", ";", "|", "&") or tok.startswith((">", "2>", "1>", "<")):
            break
        if tok.startswith("-"):
            flag = tok.split("=", 1)[0]
            if flag in ("-r", "--requirement", "-e", "--editable"):
                skipped.append(tok)  # a file or a local folder: cannot travel in requirements.txt
            if flag in takes_value and "=" not in tok:
                skip_next = True
            continue
        if "{" in tok or "$" in tok:
            skipped.append(tok)
            continue
        if conda:
            tok = tok.split("::")[-1]
            name_ver = re.match(r"^([A-Za-z0-9][\w.\-]*)=([^=<>!].*)$", tok)
            if name_ver:  # conda's `pkg=1.2` means 1.2.*
                ver = name_ver.group(2)
                tok = f"{name_ver.group(1)}=={ver}" + ("" if ver.endswith("*") else ".*")
        reqs.append(tok)
    return reqs, skipped


# --------------------------------------------------------------------------- choosing cells


def _directive(cell: Cell) -> tuple[str, str]:
    """("export"|"skip"|"", reason) from the ``#| blankly`` directive lines; ("bad", text) if unknown."""
    for line in cell.source.lstrip("\n").split("\n"):
        s = line.strip()
        if not s.startswith("#|"):
            break
        m = _DIRECTIVE.match(s)
        if not m:
            continue
        rest = m.group(1).strip()
        if rest and not rest.startswith(":"):
            return "bad", s  # `#| blankly-skip`, `#| blankly skip`...
        value = rest[1:].strip().lower()
        if value in ("", "export", "yes", "include"):
            return "export", "`#| blankly`"
        if value in ("skip", "no", "exclude"):
            return "skip", "`#| blankly: skip`"
        return "bad", s
    return "", ""


def _first_line(source: str) -> str:
    for line in source.split("\n"):
        s = line.strip()
        if s and not s.startswith("#|"):
            return s if len(s) <= 80 else s[:77] + "..."
    return ""


def cell_label(cell: Cell) -> str:
    return _label(cell.index, cell.id)


def _label(index: int, cell_id: Optional[str]) -> str:
    return f"cell {index} (id {cell_id})" if cell_id else f"cell {index}"


@dataclass
class _Plan:
    selection: str
    choices: list[CellChoice]
    taken: list[tuple[Cell, _Stripped, str]]  # cell, stripped, reason
    stripped: dict[int, _Stripped]  # by position in the cell list
    entry_cell: Optional[tuple[Cell, _Stripped]]
    problems: list[str]
    notes: list[str]


def _plan(cells: Sequence[Cell], select: Optional[Sequence[int]], entry_given: bool) -> _Plan:
    problems: list[str] = []
    notes: list[str] = []
    code = [(pos, c) for pos, c in enumerate(cells) if c.cell_type == "code"]
    marks: dict[int, tuple[str, str]] = {}
    for pos, c in code:
        mark, why = _directive(c)
        if mark == "bad":
            problems.append(
                f"{cell_label(c)}: unknown directive `{why}`; write `#| blankly` to export the cell "
                "or `#| blankly: skip` to leave it out"
            )
            mark = ""
        if SKIP_TAG in c.tags:
            mark, why = "skip", "tag `blankly-skip`"
        elif mark != "skip" and EXPORT_TAG in c.tags:
            mark, why = "export", "tag `blankly`"
        marks[pos] = (mark, why)
    if select is not None:
        selection = "explicit"
        wanted = set()
        by_index = {c.index: (pos, c) for pos, c in enumerate(cells)}
        for i in select:
            if i not in by_index:
                problems.append(f"select: there is no cell {i} (the notebook has {len(cells)} cells)")
            elif by_index[i][1].cell_type != "code":
                problems.append(f"select: cell {i} is a {by_index[i][1].cell_type} cell, not a code cell")
            else:
                wanted.add(by_index[i][0])
    elif any(m == "export" for m, _ in marks.values()):
        selection = "marked"
    else:
        selection = "all"
    stripped: dict[int, _Stripped] = {}
    choices: list[CellChoice] = []
    taken: list[tuple[Cell, _Stripped, str]] = []
    entry_cell = None
    for pos, c in code:
        st = _strip_ipython(c.source)
        stripped[pos] = st
        mark, why = marks[pos]
        if st.magic == DEPLOY_MAGIC:
            ok, reason = False, (
                "the %%blankly_deploy cell (the given entry point is used instead)"
                if entry_given
                else "the %%blankly_deploy cell: its body is the entry point"
            )
            entry_cell = (c, st)
        elif selection == "explicit":
            ok, reason = (True, "chosen") if pos in wanted else (False, "not chosen")
        elif mark == "skip":
            ok, reason = False, f"skipped by {why}"
        elif selection == "marked":
            ok, reason = (True, why) if mark == "export" else (False, "not marked")
        elif st.dropped:
            ok, reason = True, ""  # reported just below
        elif not st.has_code:
            ok, reason = False, ("only IPython commands" if st.removed else "empty")
        else:
            ok, reason = True, "no cell is marked: every code cell is taken"
        if ok and st.dropped:
            ok, reason = False, f"a %%{st.magic} cell, which cannot run in a script"
            notes.append(f"{cell_label(c)}: dropped, a %%{st.magic} cell cannot run in a script")
        if ok:
            taken.append((c, st, reason))
        choices.append(CellChoice(c.index, c.id, _first_line(c.source), ok, reason))
    return _Plan(selection, choices, taken, stripped, entry_cell, problems, notes)


def preview_cells(cells: Sequence[Cell]) -> list[CellChoice]:
    """Every code cell with whether the marker rules take it and why (for the panel)."""
    return _plan(cells, None, entry_given=False).choices


# --------------------------------------------------------------------------- the script


@dataclass
class _Segment:
    start: int  # first script line (1-based)
    text: str
    label: str  # "cell 3 (id ab12)" or "the entry point"
    cell: Optional[Cell]
    offset: int = 0  # script line `start` is line `offset + 1` of the cell

    def where(self, line: int) -> str:
        return f"{self.label}, line {line - self.start + 1 + self.offset}"


_TOP_IPYTHON = re.compile(r"^(?:display|get_ipython)[ \t]*\(|^[A-Za-z_]\w*[ \t]*=[ \t]*get_ipython[ \t]*\(", re.M)
_DISPLAY_BOUND = re.compile(
    r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+display\b|^[ \t]*(?:from\b[^\n]*)?\bimport\b[^\n#]*\bdisplay\b"
    r"|^[ \t]*display[ \t]*(?::|=(?!=))",
    re.M,
)
_FUTURE = re.compile(r"^from[ \t]+__future__[ \t]+import[ \t]+([\w, \t]+?)[ \t]*(?:#.*)?$", re.M)
_MAIN_BLOCK = re.compile(r"^if[ \t(]+__name__[ \t]*==[ \t]*[\"']__main__[\"']", re.M)
_TOP_AWAIT = re.compile(r"^(?:[A-Za-z_][\w.,\[\] \t]*=[ \t]*)?await\b|^async[ \t]+(?:for|with)\b", re.M)


def _remove_top_ipython(st: _Stripped, display_bound: bool) -> list[str]:
    """Comment out top-level ``display(...)`` / ``get_ipython()`` statements; return what went."""
    lines = st.lines if st.lines is not None else _split(st.text)
    kinds = _line_kinds(lines, _is_escape)
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


def _hoist_future(st: _Stripped) -> list[str]:
    """Take ``from __future__`` imports out of a cell (they must open the script)."""
    lines = st.lines if st.lines is not None else _split(st.text)
    kinds = _line_kinds(lines) if ('"""' in st.text or "'''" in st.text) else None
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


def _entry_stripped(entry: str) -> tuple[_Stripped, int]:
    """The entry body, without a leading ``%%blankly_deploy`` line; and that line's offset."""
    lines = _split(entry)
    offset = 0
    first = _leading_code_line(lines)
    if first >= 0 and re.match(r"^\s*%%\s*" + DEPLOY_MAGIC + r"\b", lines[first]):
        offset = first + 1
        lines = lines[offset:]
    st = _strip_ipython("\n".join(lines))
    if st.magic:  # a cell magic inside the entry cannot run either
        st = _Stripped(None, "", magic=st.magic, dropped=True, has_code=False)
    return st, offset


def _indent_block(text: str) -> str:
    lines = _split(text)
    kinds = _line_kinds(lines, _is_escape)
    pad = "\t" if any(ln.startswith("\t") for ln in lines) else "    "
    return "\n".join(pad + ln if ln.strip() and k != STRING else ln for ln, k in zip(lines, kinds))


def export_script(
    cells: Sequence[Cell],
    *,
    entry: Optional[str] = None,
    notebook_name: Optional[str] = None,
    select: Optional[Sequence[int]] = None,
) -> ExportedScript:
    """Choose cells, strip IPython syntax, join them into a script and check it.

    Problems (syntax errors, undefined names, bad directives) are collected in
    ``.problems``, each naming its cell; nothing is raised for them.
    """
    if entry is not None and not entry.strip():
        entry = None
    plan = _plan(cells, select, entry_given=entry is not None)
    problems = list(plan.problems)
    notes = list(plan.notes)
    warnings: list[str] = []
    pips: list[tuple[str, str]] = []
    nb = notebook_name or ""

    parts: list[tuple[str, str, Cell, _Stripped]] = []  # (label, marker, cell, stripped)
    for c, st, _ in plan.taken:
        marker = f"# %% [cell {c.index}" + (f", id {c.id}]" if c.id else "]") + (f" {nb}" if nb else "")
        parts.append((cell_label(c), marker, c, st))
    entry_from = None
    entry_st = None
    if entry is not None:
        entry_st, offset = _entry_stripped(entry)
        entry_from = "the given entry point"
        entry_label = "the entry point"
    elif plan.entry_cell is not None:
        c, st = plan.entry_cell
        entry_st, offset = _entry_stripped(c.source)
        entry_from = f"the %%blankly_deploy cell ({cell_label(c)})"
        entry_label = f"{cell_label(c)} (the %%blankly_deploy cell)"
        notes.append(f"entry point: the body of {entry_from}, run under `if __name__ == \"__main__\":`")
    if entry_st is not None:
        if entry_st.dropped:
            problems.append(f"{entry_label}: the entry point holds a %%{entry_st.magic} cell magic, which a script cannot run")
            entry_st = None
        elif not entry_st.has_code:
            notes.append(f"{entry_label} has no Python code; the script has no entry point")
            entry_st = None
    # Pip lines: from the cells taken, and (when nothing is marked) from the cells
    # that are only IPython commands: that is where notebooks install packages.
    pip_sources = [(c, st) for c, st, _ in plan.taken]
    if plan.selection == "all":
        ipython_only = {ch.index for ch in plan.choices if ch.reason == "only IPython commands"}
        pip_sources += [(cells[pos], st) for pos, st in plan.stripped.items() if st.pips and cells[pos].index in ipython_only]
    pip_sources.sort(key=lambda item: item[0].index)
    if entry_st is not None:
        pip_sources.append((None, entry_st))
    for c, st in pip_sources:
        for line, cmd in st.pips:
            where = f"{cell_label(c) if c else 'the entry point'}, line {line}"
            reqs, skipped = pip_requirements(cmd)
            pips.extend((r, where) for r in reqs)
            if reqs:
                notes.append(f"{where}: `{cmd}` -> requirements.txt: {', '.join(reqs)}")
            if skipped:
                warnings.append(
                    f"{where}: `{cmd}`: {', '.join(skipped)} not taken into requirements.txt; "
                    "pass the packages it installs with requirements="
                )
    for c, st, _ in plan.taken:
        if st.removed:
            shown = ", ".join(f"`{t}`" for _, t in st.removed[:3]) + (" ..." if len(st.removed) > 3 else "")
            notes.append(f"{cell_label(c)}: {len(st.removed)} IPython line(s) commented out: {shown}")

    # Top-level display()/get_ipython() statements and __future__ imports.
    all_parts = [p[3] for p in parts] + ([entry_st] if entry_st is not None else [])
    if any("get_ipython" in st.text or "display" in st.text for st in all_parts):
        display_bound = any(_DISPLAY_BOUND.search(st.text) for st in all_parts)
        for label, _, c, st in parts:
            if "get_ipython" in st.text or "display" in st.text:
                gone = _remove_top_ipython(st, display_bound)
                if gone:
                    notes.append(f"{label}: commented out {', '.join(f'`{g}`' for g in gone[:3])} (IPython only)")
    features: list[str] = []
    for _, _, _, st in parts:
        if "__future__" in st.text:
            features.extend(f for f in _hoist_future(st) if f not in features)

    # Assemble.
    header = [
        f"# Blankly model script generated by {GENERATOR} from {nb or 'notebook cells'}.",
        "# Edit the notebook and build again; each `# %% [cell N]` marker names the cell below it.",
    ]
    if features:
        header.append(f"from __future__ import {', '.join(features)}")
    out_lines = list(header)
    segments: list[_Segment] = []
    for label, marker, c, st in parts:
        out_lines.append("")
        out_lines.append(marker)
        text = st.text.rstrip()
        segments.append(_Segment(len(out_lines) + 1, text, label, c))
        out_lines.extend(_split(text))
    if entry_st is not None:
        out_lines.append("")
        out_lines.append(f"# %% [entry point] {entry_from}")
        out_lines.append('if __name__ == "__main__":')
        body = _indent_block(entry_st.text.rstrip())
        segments.append(_Segment(len(out_lines) + 1, body, entry_label, None, offset))
        out_lines.extend(_split(body))
    text = "\n".join(out_lines) + "\n"
    if entry_st is not None:
        entry_from = f"{entry_from}, under `if __name__ == \"__main__\":`"
    else:
        entry_from = next(
            (f"the `if __name__ == \"__main__\":` block in {seg.label}" for seg in segments if _MAIN_BLOCK.search(seg.text)),
            None,
        )

    result = ExportedScript(
        text=text,
        selection=plan.selection,
        choices=plan.choices,
        cells=[CellRef(c.index, c.id, reason) for c, _, reason in plan.taken],
        has_entry=entry_st is not None,
        entry_from=entry_from,
        pip_requirements=pips,
        notes=notes,
        warnings=warnings,
        problems=problems,
    )
    if not plan.taken and entry_st is None:
        problems.append(
            "no cell to export: mark the strategy cells with the tag `blankly` or a first line `#| blankly`"
        )
        return result
    checked = [(p[3], p[2]) for p in parts] + ([(entry_st, None)] if entry_st is not None else [])
    _check(result, segments, cells, plan, checked)
    return result


# --------------------------------------------------------------------------- checks


def _segment_at(segments: Sequence[_Segment], line: int) -> Optional[_Segment]:
    found = None
    for seg in segments:
        if seg.start <= line:
            found = seg
        else:
            break
    return found


def _where(segments: Sequence[_Segment], line: Optional[int]) -> str:
    seg = _segment_at(segments, line or 0)
    if seg is None or line is None:
        return f"script line {line}"
    return seg.where(line)


_BUILTINS = frozenset(dir(builtins))
MODULE_DUNDERS = frozenset(
    {"__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__",
     "__annotations__", "__cached__", "__path__", "__class__", "__debug__"}
)


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


def _scope_names(table: symtable.SymbolTable) -> tuple[set[str], dict[str, None]]:
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
        return _scope_names(symtable.symtable(text, "<cell>", "exec"))[0]
    except (SyntaxError, ValueError, RecursionError):
        return set()


def _first_use(segments: Sequence[_Segment], name: str) -> Optional[int]:
    """The first script line that seems to use ``name`` (for the message only)."""
    pat = re.compile(r"(?<![\w.])" + re.escape(name) + r"\b")
    for seg in segments:
        if name not in seg.text:
            continue
        for n, line in enumerate(seg.text.split("\n")):
            if not line.lstrip().startswith("#") and pat.search(line):
                return seg.start + n
    return None


def _check(
    result: ExportedScript,
    segments: list[_Segment],
    cells: Sequence[Cell],
    plan: _Plan,
    parts: list[tuple[_Stripped, Optional[Cell]]],
) -> None:
    """Syntax, undefined names, imports, data paths, secrets: all against the cells."""
    text = result.text
    try:
        table = symtable.symtable(text, "<script>", "exec")
    except SyntaxError as exc:
        line = exc.lineno
        code = (exc.text or "").strip("\n")
        msg = exc.msg or "invalid syntax"
        result.problems.append(f"{_where(segments, line)}: syntax error: {msg}" + (f": `{code.strip()}`" if code.strip() else ""))
        return
    except (ValueError, RecursionError) as exc:
        result.problems.append(f"the script cannot be compiled: {exc}")
        return
    for seg in segments:
        if "await" not in seg.text and "async" not in seg.text:
            continue
        for m in _TOP_AWAIT.finditer(seg.text):
            line = seg.start + seg.text.count("\n", 0, m.start())
            result.problems.append(
                f"{seg.where(line)}: top-level `await` works in IPython but not in a script; "
                "put it in an `async def main()` and run it with `asyncio.run(main())`"
            )
    _check_names(result, table, segments, cells, plan, parts)
    for seg in segments:
        _scan_segment(result, seg)


def _check_names(
    result: ExportedScript,
    table: symtable.SymbolTable,
    segments: list[_Segment],
    cells: Sequence[Cell],
    plan: _Plan,
    parts: list[tuple[_Stripped, Optional[Cell]]],
) -> None:
    bound, loaded = _scope_names(table)
    undefined = [n for n in loaded if n not in bound and n not in _BUILTINS and n not in MODULE_DUNDERS]
    if not undefined:
        return
    star = re.search(r"^[ \t]*from[ \t]+\S+[ \t]+import[ \t]+\*", result.text, re.M)
    if star:
        line = result.text.count("\n", 0, star.start()) + 1
        result.notes.append(
            f"{_where(segments, line)}: `import *` makes the undefined-name check unreliable, so it was skipped"
        )
        return
    removed: dict[str, str] = {}
    for st, c in parts:
        for name, (line, code) in st.removed_bindings.items():
            label = cell_label(c) if c else "the entry point"
            removed.setdefault(name, f"{label}, line {line}: `{code}`")
    defs: Optional[dict[str, list[CellChoice]]] = None
    for name in undefined:
        use = _first_use(segments, name)
        where = _where(segments, use) if use else "the script"
        if name in removed:
            result.problems.append(
                f"{where}: `{name}` is used, but its only definition ({removed[name]}) is IPython syntax "
                "that a script cannot run; compute it in plain Python instead"
            )
            continue
        if name in IPYTHON_NAMES:
            result.problems.append(
                f"{where}: `{name}` exists only inside IPython/Jupyter; remove it from the exported code"
                + (" (or `from IPython.display import display`)" if name == "display" else "")
            )
            continue
        if defs is None:
            defs = _definitions(cells, plan)
        found = defs.get(name)
        if found:
            who = ", ".join(
                f"{_label(ch.index, ch.id)} ({ch.reason})" for ch in found[:3]
            )
            fix = (
                "choose that cell too"
                if plan.selection == "explicit"
                else "tag it `blankly` or make `#| blankly` its first line (and remove any skip mark)"
            )
            result.problems.append(
                f"{where}: `{name}` is not defined in the exported code; it is defined in {who}, "
                f"which is not exported: {fix}"
            )
        else:
            empty = not any(c.cell_type == "code" and c.source.strip() for c in cells)
            result.problems.append(
                f"{where}: `{name}` is used but never defined or imported anywhere in the notebook"
                # the usual cause: cells typed but the notebook never saved
                + (" (it has no code cells: add your strategy's cells and save it)" if empty else "")
            )


def _definitions(cells: Sequence[Cell], plan: _Plan) -> dict[str, list[CellChoice]]:
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


# Imports, path-like string literals and secret-looking assignments are found
# with regular expressions over each segment; only lines where a statement
# starts count (a docstring line that says "import x" is not an import).
_IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import\b|import[ \t]+([^\n#;]+))", re.M)
_STRING = re.compile(r"\"([^\"\\\n]+)\"|'([^'\\\n]+)'")
_PATHLIKE = re.compile(r"^(?![\s/]*$)[^\x00-\x1f*?<>|\"]{1,255}\.[A-Za-z][A-Za-z0-9_]{0,9}$")
# A secret-looking name (found by its keyword, then widened to the whole
# name), then `=` or `:` and a string literal.
_SECRET_WORDS = r"api_?key|api_?secret|secret|token|passw(?:or)?d|passphrase|api_?pass|private_?key|access_?key"
_SECRET_WORD = re.compile(_SECRET_WORDS)  # run on lower-cased text: much faster than (?i)
_SECRET_WORD_I = re.compile(_SECRET_WORDS, re.I)
_NAME_LEFT = re.compile(r"[\w.]*$")
_SECRET_TAIL = re.compile(r"(?i)(s?(?:_\w*)?)\b[\"']?[ \t]*(?::|=(?!=))[ \t]*[rRbBuU]?([\"'])([^\"'\n]*)\2")
_OPTIONAL_HEAD = re.compile(r"^(?:try[ \t]*:|if[ \t]+(?:typing\.)?TYPE_CHECKING[ \t]*:)")
_OPTIONAL_HANDLER = re.compile(r"^except\b[^:]*?(?::|\b(?:ImportError|ModuleNotFoundError|Exception|BaseException)\b)")


def find_imports(text: str) -> list[tuple[str, bool, int]]:
    """(dotted module, optional, 1-based line) for each absolute import statement in ``text``."""
    if "import" not in text:
        return []
    lines = None
    kinds = None
    found = []
    for m in _IMPORT_LINE.finditer(text):
        line_no = text.count("\n", 0, m.start())
        if lines is None:
            lines = text.split("\n")
            if '"""' in text or "'''" in text or "\\\n" in text:
                kinds = _line_kinds(lines, _is_escape)
        if kinds is not None and kinds[line_no] != START:
            continue
        if m.group(1) is not None:
            modules = [m.group(1)] if not m.group(1).startswith(".") else []
        else:
            names = m.group(2).rstrip().rstrip("\\")
            modules = [part.strip().split()[0] for part in names.strip("() ").split(",") if part.strip()]
        optional = _is_optional(lines, line_no)
        for mod in modules:
            if re.match(r"^[A-Za-z_][\w.]*$", mod):
                found.append((mod, optional, line_no + 1))
    return found


def _is_optional(lines: list[str], i: int) -> bool:
    line = lines[i]
    indent = len(line) - len(line.lstrip())
    if not indent:
        return False
    for j in range(i - 1, -1, -1):
        s = lines[j].strip()
        if not s or s.startswith("#"):
            continue
        ind = len(lines[j]) - len(lines[j].lstrip())
        if ind >= indent:
            continue
        if s.startswith("except"):
            return bool(_OPTIONAL_HANDLER.match(s))  # the fallback import of a try/except ImportError
        if not _OPTIONAL_HEAD.match(s):
            return False
        if s.startswith("if"):
            return True
        for k in range(i + 1, len(lines)):
            t = lines[k].strip()
            if not t or t.startswith("#"):
                continue
            kind = len(lines[k]) - len(lines[k].lstrip())
            if kind < ind:
                return False
            if kind == ind:
                if _OPTIONAL_HANDLER.match(t):
                    return True
                if not t.startswith(("except", "else", "finally")):
                    return False
        return False
    return False


def _looks_secret(value: str) -> bool:
    if len(value) < 12 or any(ch.isspace() for ch in value):
        return False
    low = value.lower()
    if set(value) <= {"*", "x", "X", "-", "_", "."} or any(p in low for p in ("your", "<", "{", "$", "xxxx", "****", "example", "placeholder", "changeme")):
        return False
    return True


def _code_line_of(text: str, pos: int) -> Optional[int]:
    """0-based line of ``pos``, or None when that line is a comment."""
    start = text.rfind("\n", 0, pos) + 1
    if text[start:pos].lstrip().startswith("#"):
        return None
    return text.count("\n", 0, pos)


def _scan_segment(result: ExportedScript, seg: _Segment) -> None:
    text = seg.text
    for mod, optional, line in find_imports(text):
        result.imports.append(ImportRef(mod, optional, seg.where(seg.start + line - 1)))
    if "'" not in text and '"' not in text:
        return
    for m in _STRING.finditer(text):
        value = m.group(1) or m.group(2)
        if "." in value and "://" not in value and _PATHLIKE.match(value):
            n = _code_line_of(text, m.start())
            if n is not None:
                result.paths.append((value, seg.where(seg.start + n)))
    low = text.lower()
    words = _SECRET_WORD.finditer(low) if len(low) == len(text) else _SECRET_WORD_I.finditer(text)
    for m in words:
        tail = _SECRET_TAIL.match(text, m.end())
        if tail is None or not _looks_secret(tail.group(3)):
            continue
        head = _NAME_LEFT.search(text, max(0, m.start() - 80), m.start())
        name = (head.group() if head else "") + text[m.start():m.end()] + tail.group(1)
        n = _code_line_of(text, m.start())
        if n is not None:
            result.warnings.append(
                f"{seg.where(seg.start + n)}: `{name}` is set to a literal that looks like a secret "
                f"({len(tail.group(3))} characters); it would be stored in the model zip. "
                "Read it from an environment variable or keys.json instead"
            )

