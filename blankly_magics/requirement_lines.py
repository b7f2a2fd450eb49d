"""Requirement lines as pip reads them, parsed with ``packaging``: one parser for the
exporter (the user's files, ``!pip install`` lines, the inferred pins) and the server
(is a model's requirements.txt met by the server's own environment?).

A line is a PEP 508 requirement (``pandas>=2``, ``name @ url``, with markers), a
pip option (``--extra-index-url ...``, ``-r other.txt``), or a bare URL or path;
names compare in their canonical form (``Python_Dateutil`` is ``python-dateutil``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence, Union

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

_INLINE_COMMENT = re.compile(r"(^|\s+)#.*$")
_EGG = re.compile(r"#egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_NESTED = re.compile(r"^(?:-r|--requirement)(?:\s+|=)(.+)$")
_URL_OR_PATH = ("git+", "hg+", "svn+", "bzr+", ".", "/", "~")

RequirementSource = Union[str, Path, Sequence[str], None]


def canonical_name(name: str) -> str:
    """A project name as pip compares it (PEP 503): ``PyYAML`` and ``pyyaml`` are one project."""
    return str(canonicalize_name(name))


def requirement_lines(text: str) -> list[str]:
    """The lines of a requirements file that mean something: comments and blank lines
    dropped, backslash continuations joined; options (``-r``, ``--index-url``) kept as written."""
    lines: list[str] = []
    joined = ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            joined += raw.rstrip()[:-1] + " "
            continue
        raw, joined = joined + raw, ""
        line = _INLINE_COMMENT.sub("", raw).strip()
        if line:
            lines.append(line)
    if joined.strip():
        lines.append(_INLINE_COMMENT.sub("", joined).strip())
    return [line for line in lines if line]


def is_option(line: str) -> bool:
    return line.lstrip().startswith("-")


def is_url_or_path(line: str) -> bool:
    s = line.strip()
    return s.startswith(_URL_OR_PATH) or "://" in s.split("@", 1)[0]


def parse_requirement(line: str) -> Optional[Requirement]:
    """The PEP 508 requirement on ``line``, or None for options, bare URLs and paths, and
    lines that are not valid requirements."""
    s = line.strip()
    if not s or is_option(s) or is_url_or_path(s):
        return None
    try:
        return Requirement(s)
    except InvalidRequirement:
        return None


def requirement_name(line: str) -> Optional[str]:
    """The canonical name of the project a line installs, or None (options, paths, bad lines).
    A bare VCS URL names its project with ``#egg=``."""
    req = parse_requirement(line)
    if req is not None:
        return canonical_name(req.name)
    egg = _EGG.search(line) if is_url_or_path(line) else None
    return canonical_name(egg.group(1)) if egg else None


def has_specifier(line: str) -> bool:
    """Does the line say more than a name (a version, a URL, a marker)?"""
    req = parse_requirement(line)
    if req is None:
        return True
    return bool(req.specifier) or bool(req.url) or req.marker is not None


def invalid_requirement(line: str) -> Optional[str]:
    """Why pip would refuse ``line``, or None when it is a requirement, an option, a URL or a path."""
    s = line.strip()
    if not s or is_option(s) or is_url_or_path(s):
        return None
    try:
        Requirement(s)
    except InvalidRequirement as exc:
        return str(exc).split("\n", 1)[0]
    return None


def read_requirement_lines(
    source: RequirementSource, _seen: Optional[set[Path]] = None
) -> tuple[list[str], list[str]]:
    """Requirement lines from a file path or a list of lines: (lines, problems).

    ``-r other.txt`` in a file is followed (relative to that file); a line pip would
    refuse is a problem naming it."""
    if source is None:
        return [], []
    if not isinstance(source, (str, Path)):
        return _checked(requirement_lines("\n".join(str(x) for x in source)), "requirements")
    path = Path(source).expanduser()
    seen = _seen if _seen is not None else set()
    try:
        resolved = path.resolve()
        if resolved in seen:
            return [], [f"requirements file {path} includes itself (-r loop)"]
        seen.add(resolved)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [f"requirements file {path} does not exist"]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"requirements file {path} cannot be read: {exc}"]
    lines: list[str] = []
    problems: list[str] = []
    for line in requirement_lines(text):
        nested = _NESTED.match(line)
        if nested:
            target = Path(nested.group(1).strip()).expanduser()
            more, errs = read_requirement_lines(target if target.is_absolute() else path.parent / target, seen)
            lines.extend(more)
            problems.extend(errs)
        else:
            lines.append(line)
            problems.extend(_checked([line], f"requirements file {path}")[1])
    return lines, problems


def _checked(lines: list[str], where: str) -> tuple[list[str], list[str]]:
    problems = []
    for line in lines:
        why = invalid_requirement(line)
        if why:
            problems.append(f"{where}: `{line}` is not a valid requirement ({why})")
    return lines, problems
