"""requirements.txt for a model: the imports pinned to what is installed here, then the
``!pip install`` lines of the notebook, then the user's own lines (which win).

An import that no installed distribution provides and that no named requirement
accounts for is reported; nothing is guessed from a package index.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from ..requirement_lines import canonical_name, has_specifier, requirement_name
from .distributions import distributions_for, installed_version, is_stdlib, local_install


@dataclass
class Requirements:
    lines: list[str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _provides(req_norm: str, module: str) -> bool:
    """Does a requirement name plausibly provide this import (for imports not installed here)?"""
    mod = canonical_name(module)
    flat = mod.replace("-", "")
    return req_norm in (mod, f"python-{mod}", f"py{mod}", f"py-{mod}", f"{mod}-python") or req_norm.replace("-", "") == flat


def _major(version: Optional[str]) -> int:
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return 0


def _named(user_lines: Sequence[str], notebook_lines: Sequence[tuple[str, str]]) -> tuple[dict, dict, list]:
    """(the user's lines by name, the notebook's pip lines by name, lines with no name)."""
    user: dict[str, str] = {}
    nb: dict[str, str] = {}
    extra: list[str] = []
    for line, into in [(line, user) for line in user_lines] + [(line, nb) for line, _ in notebook_lines]:
        name = requirement_name(line)
        if name is None:
            if line not in extra:
                extra.append(line)
        else:
            into[name] = line
    return user, nb, extra


def _infer(imports: Iterable[tuple[str, bool, str]], local: set[str], declared: set[str], out: Requirements) -> dict[str, str]:
    """{canonical name: pinned line} for the imported modules that are installed here."""
    inferred: dict[str, str] = {}
    seen_tops: set[str] = set()
    for module, optional, where in imports:
        top = module.split(".", 1)[0]
        if not top or top in local or is_stdlib(top):
            continue
        dists = distributions_for(top)
        if len(dists) > 1 and "." in module:
            dists = distributions_for(module)  # a shared namespace (``google.protobuf``)
        key = module if len(dists) > 1 else top
        if key in seen_tops:
            continue
        seen_tops.add(key)
        if not dists:
            _unresolved(top, optional, where, declared, out)
            continue
        if len(dists) > 1:
            out.notes.append(f"`{module}` is provided by {', '.join(dists)}; all are required")
        for dist in dists:
            _pin(dist, inferred, declared, out)
    return inferred


def _unresolved(top: str, optional: bool, where: str, declared: set[str], out: Requirements) -> None:
    if any(_provides(name, top) for name in declared):
        return
    if optional:
        out.notes.append(f"{where}: optional import `{top}` is not installed here; left out of requirements.txt")
        return
    out.problems.append(
        f"{where}: module `{top}` is imported but no installed distribution provides it; "
        "install it here, or name its distribution in the requirements (--requirements FILE)"
    )


def _pin(dist: str, inferred: dict[str, str], declared: set[str], out: Requirements) -> None:
    norm = canonical_name(dist)
    if norm in inferred:
        return
    version = installed_version(dist)
    inferred[norm] = f"{dist}=={version}" if version else dist
    origin = local_install(dist) if version else None
    if origin and norm not in declared:
        out.warnings.append(
            f"{dist} {version} is installed from {origin}, not from a package index; "
            f"`{dist}=={version}` may not install where the model runs: name it in the requirements"
        )


def _blankly_and_numpy(inferred: dict[str, str], declared: set[str], out: Requirements) -> None:
    """blankly is always there; blankly breaks on numpy 2 (tulipy's compiled ABI)."""
    if "blankly" not in inferred:
        version = installed_version("blankly")
        inferred["blankly"] = f"blankly=={version}" if version else "blankly"
    np_version = installed_version("numpy")
    if "numpy" in inferred:
        if np_version and _major(np_version) >= 2:
            inferred["numpy"] = "numpy<2"
            out.warnings.append(
                f"numpy {np_version} is installed here, but blankly needs numpy<2: requirements.txt says numpy<2"
            )
    elif "numpy" not in declared:
        inferred["numpy"] = "numpy<2"
        out.notes.append("numpy<2 added: blankly does not work with numpy 2")


def resolve_requirements(
    imports: Iterable[tuple[str, bool, str]],
    *,
    local_modules: Iterable[str] = (),
    user_lines: Sequence[str] = (),
    notebook_lines: Sequence[tuple[str, str]] = (),
) -> Requirements:
    """requirements.txt lines: inferred pins, then ``!pip install`` lines, then the user's (who wins).

    ``imports`` are (dotted module, optional, where); ``notebook_lines`` are (line, where).
    """
    out = Requirements([])
    user, nb, extra = _named(user_lines, notebook_lines)
    declared = set(user) | set(nb)
    inferred = _infer(imports, set(local_modules), declared, out)
    _blankly_and_numpy(inferred, declared, out)
    merged = dict(inferred)
    for name, line in nb.items():
        if has_specifier(line) or name not in merged:
            version = None if has_specifier(line) else installed_version(line.strip())
            merged[name] = f"{line.strip()}=={version}" if version else line
    merged.update(user)
    out.lines = extra + [merged[k] for k in sorted(merged)]
    return out
