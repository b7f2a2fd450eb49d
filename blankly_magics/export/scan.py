"""What the exported code names: the modules it imports, the data files it reads, and
string literals that look like secrets.

Found with regular expressions over each cell's text; only lines where a
statement starts count (a docstring line that says "import x" is not an import).
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional

from .ipython import is_escape
from .lines import START, line_kinds
from .result import ExportedScript, ImportRef, Segment

_IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import\b|import[ \t]+([^\n#;]+))", re.M)
_MODULE = re.compile(r"^[A-Za-z_][\w.]*$")
_DEF = re.compile(r"^(?:async[ \t]+)?def\b")
_OPTIONAL_HEAD = re.compile(r"^(?:try[ \t]*:|if[ \t]+(?:typing\.)?TYPE_CHECKING[ \t]*:)")
_OPTIONAL_HANDLER = re.compile(
    r"^except\b[^:]*?(?::|\b(?:ImportError|ModuleNotFoundError|Exception|BaseException)\b)"
)

_STRING = re.compile(r"\"([^\"\\\n]+)\"|'([^'\\\n]+)'")
_PATHLIKE = re.compile(r"^(?![\s/]*$)[^\x00-\x1f*?<>|\"]{1,255}\.[A-Za-z][A-Za-z0-9_]{0,9}$")

# A secret-looking name (found by its keyword, then widened to the whole
# name), then `=` or `:` and a string literal.
_SECRET_WORDS = r"api_?key|api_?secret|secret|token|passw(?:or)?d|passphrase|api_?pass|private_?key|access_?key"
_SECRET_WORD = re.compile(_SECRET_WORDS)  # run on lower-cased text: much faster than (?i)
_SECRET_WORD_I = re.compile(_SECRET_WORDS, re.I)
_NAME_LEFT = re.compile(r"[\w.]*$")
_SECRET_TAIL = re.compile(r"(?i)(s?(?:_\w*)?)\b[\"']?[ \t]*(?::|=(?!=))[ \t]*[rRbBuU]?([\"'])([^\"'\n]*)\2")
_PLACEHOLDERS = ("your", "<", "{", "$", "xxxx", "****", "example", "placeholder", "changeme")


class FoundImport(NamedTuple):
    module: str  # dotted, as written
    optional: bool  # inside try/except ImportError or `if TYPE_CHECKING:`
    line: int  # 1-based
    in_function: bool  # inside a def: runs only when the function is called


def find_imports(text: str) -> list[FoundImport]:
    """Each absolute import statement in ``text``."""
    if "import" not in text:
        return []
    lines: list[str] = []
    kinds = None
    found = []
    for m in _IMPORT_LINE.finditer(text):
        line_no = text.count("\n", 0, m.start())
        if not lines:
            lines = text.split("\n")
            if '"""' in text or "'''" in text or "\\\n" in text:
                kinds = line_kinds(lines, is_escape)
        if kinds is not None and kinds[line_no] != START:
            continue
        if m.group(1) is not None:
            modules = [m.group(1)] if not m.group(1).startswith(".") else []
        else:
            names = m.group(2).rstrip().rstrip("\\")
            modules = [part.strip().split()[0] for part in names.strip("() ").split(",") if part.strip()]
        optional = _is_optional(lines, line_no)
        in_function = _in_function(lines, line_no)
        found.extend(FoundImport(mod, optional, line_no + 1, in_function) for mod in modules if _MODULE.match(mod))
    return found


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_optional(lines: list[str], i: int) -> bool:
    """Is line ``i`` inside ``try:`` with an ImportError handler, or under ``if TYPE_CHECKING:``?"""
    indent = _indent(lines[i])
    if not indent:
        return False
    for j in range(i - 1, -1, -1):
        s = lines[j].strip()
        if not s or s.startswith("#") or _indent(lines[j]) >= indent:
            continue
        if s.startswith("except"):
            return bool(_OPTIONAL_HANDLER.match(s))  # the fallback import of a try/except ImportError
        if not _OPTIONAL_HEAD.match(s):
            return False
        return s.startswith("if") or _has_import_handler(lines, i, _indent(lines[j]))
    return False


def _in_function(lines: list[str], i: int) -> bool:
    """Is line ``i`` in the body of a ``def`` (at any depth)?"""
    indent = _indent(lines[i])
    for j in range(i - 1, -1, -1):
        if not indent:
            return False
        s = lines[j].strip()
        if not s or s.startswith("#") or _indent(lines[j]) >= indent:
            continue
        if _DEF.match(s):
            return True
        indent = _indent(lines[j])
    return False


def _has_import_handler(lines: list[str], i: int, ind: int) -> bool:
    """Does the ``try:`` at indent ``ind`` above line ``i`` catch ImportError?"""
    for k in range(i + 1, len(lines)):
        t = lines[k].strip()
        if not t or t.startswith("#"):
            continue
        kind = _indent(lines[k])
        if kind < ind:
            return False
        if kind == ind:
            if _OPTIONAL_HANDLER.match(t):
                return True
            if not t.startswith(("except", "else", "finally")):
                return False
    return False


def looks_secret(value: str) -> bool:
    if len(value) < 12 or any(ch.isspace() for ch in value):
        return False
    low = value.lower()
    return not (set(value) <= {"*", "x", "X", "-", "_", "."} or any(p in low for p in _PLACEHOLDERS))


def _code_line_of(text: str, pos: int) -> Optional[int]:
    """0-based line of ``pos``, or None when that line is a comment."""
    start = text.rfind("\n", 0, pos) + 1
    if text[start:pos].lstrip().startswith("#"):
        return None
    return text.count("\n", 0, pos)


def scan_segment(result: ExportedScript, seg: Segment) -> None:
    """Add the segment's imports, path-like literals and secret-looking literals to ``result``."""
    text = seg.text
    for found in find_imports(text):
        result.imports.append(ImportRef(found.module, found.optional, seg.where(seg.start + found.line - 1)))
    if "'" not in text and '"' not in text:
        return
    for m in _STRING.finditer(text):
        value = m.group(1) or m.group(2)
        if "." in value and "://" not in value and _PATHLIKE.match(value):
            n = _code_line_of(text, m.start())
            if n is not None:
                result.paths.append((value, seg.where(seg.start + n)))
    _scan_secrets(result, seg)


def _scan_secrets(result: ExportedScript, seg: Segment) -> None:
    text = seg.text
    low = text.lower()
    words = _SECRET_WORD.finditer(low) if len(low) == len(text) else _SECRET_WORD_I.finditer(text)
    for m in words:
        tail = _SECRET_TAIL.match(text, m.end())
        if tail is None or not looks_secret(tail.group(3)):
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
