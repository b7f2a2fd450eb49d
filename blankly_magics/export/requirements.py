"""requirements.txt for a model: the imports pinned to what is installed here, then the
``!pip install`` lines of the notebook, then the user's own lines (which win).

An import not installed here is accounted for by a distribution the user named:
by that distribution's installed metadata, by the table of well-known name
differences (``known_imports``), or by its name. What nothing accounts for is
refused, unless the user named distributions that account for nothing either:
then the build assumes those provide it, and says so. Nothing is looked up in a
package index.
"""
from __future__ import annotations

import functools
import importlib.metadata as metadata
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from ..requirement_lines import canonical_name, has_specifier, parse_requirement, requirement_name
from .distributions import distributions_for, installed_version, is_stdlib, local_install, top_level_modules
from .known_imports import IMPORT_TO_DISTRIBUTIONS
from .result import ImportRef


@dataclass
class Requirements:
    lines: list[str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class _Named:
    """The requirement lines the user and the notebook give, by canonical name."""

    user: dict[str, str] = field(default_factory=dict)
    notebook: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # name -> where it was named
    unnamed: list[str] = field(default_factory=list)  # options, URLs: kept as written

    @property
    def names(self) -> set[str]:
        return set(self.user) | set(self.notebook)


_KNOWN = {canonical_name(module): module for module in IMPORT_TO_DISTRIBUTIONS}
_PROVIDED_BY = {canonical_name(d): module for module, dists in IMPORT_TO_DISTRIBUTIONS.items() for d in dists}


@functools.lru_cache(maxsize=None)
def _installed_modules(name: str) -> Optional[frozenset[str]]:
    """The top-level modules an installed distribution ships, or None if it is not installed here."""
    try:
        return frozenset(top_level_modules(metadata.distribution(name)))
    except (metadata.PackageNotFoundError, ValueError):
        return None


def provides(name: str, module: str) -> bool:
    """Does the distribution ``name`` (canonical) provide the top-level ``module``?"""
    installed = _installed_modules(name)
    if installed is not None:
        return module in installed
    if name in {canonical_name(d) for d in IMPORT_TO_DISTRIBUTIONS.get(module, ())}:
        return True
    mod = canonical_name(module)
    return name in (mod, f"python-{mod}", f"py{mod}", f"py-{mod}", f"{mod}-python") or (
        name.replace("-", "") == mod.replace("-", "")
    )


def _known_modules(name: str) -> bool:
    """Are the modules of ``name`` known (installed here, or in the table)?"""
    return _installed_modules(name) is not None or name in _PROVIDED_BY


def as_distribution(line: str, where: str = "the requirements") -> tuple[str, Optional[str]]:
    """The line with an import name (``sklearn``) replaced by its distribution
    (``scikit-learn``), and a note saying so; the line as it is otherwise."""
    req = parse_requirement(line)
    module = _KNOWN.get(canonical_name(req.name)) if req is not None else None
    if req is None or module is None:
        return line, None
    dists = IMPORT_TO_DISTRIBUTIONS[module]
    if canonical_name(req.name) in {canonical_name(d) for d in dists}:
        return line, None
    fixed = dists[0] + line.strip()[len(req.name):]
    return fixed, (
        f"`{line.strip()}` ({where}) names the import `{module}`, not a distribution: requirements.txt says `{fixed}`"
    )


def _named(user_lines: Sequence[str], notebook_lines: Sequence[tuple[str, str]], out: Requirements) -> _Named:
    named = _Named()
    given = [(line, "the requirements", named.user) for line in user_lines]
    given += [(line, where, named.notebook) for line, where in notebook_lines]
    for line, where, into in given:
        line, note = as_distribution(line, where)
        if note:
            out.notes.append(note)
        name = requirement_name(line)
        if name is None:
            if line not in named.unnamed:
                named.unnamed.append(line)
            continue
        into[name] = line
        named.where.setdefault(name, where)
    return named


def _infer(
    imports: Iterable[ImportRef], local: set[str], named: _Named, out: Requirements
) -> tuple[dict[str, str], list[ImportRef]]:
    """({canonical name: pinned line} for the imports installed here, the imports that are not)."""
    inferred: dict[str, str] = {}
    missing: list[ImportRef] = []
    seen: set[str] = set()
    for ref in imports:
        top = ref.top
        if not top or top in local or is_stdlib(top):
            continue
        dists = distributions_for(top)
        if len(dists) > 1 and "." in ref.module:
            dists = distributions_for(ref.module)  # a shared namespace (``google.protobuf``)
        key = ref.module if len(dists) > 1 else top
        if key in seen:
            continue
        seen.add(key)
        if not dists:
            missing.append(ref)
            continue
        if len(dists) > 1:
            out.notes.append(f"`{ref.module}` is provided by {', '.join(dists)}; all are required")
        for dist in dists:
            _pin(dist, inferred, named.names, out)
    return inferred, missing


def _pin(dist: str, inferred: dict[str, str], declared: set[str], out: Requirements) -> None:
    norm = canonical_name(dist)
    if norm in inferred:
        return
    version = installed_version(dist)
    inferred[norm] = f"{dist}=={version}" if version else dist
    origin = local_install(dist) if version else None
    if origin and norm == "blankly-magics" and norm not in declared:
        out.notes.append(f"{dist}=={version} required (installed here from {origin}): the local deployment "
                         "server runs the model with its own blankly_magics, installed beside it")
    elif origin and norm not in declared:
        out.warnings.append(
            f"{dist} {version} is installed from {origin}, not from a package index; "
            f"`{dist}=={version}` may not install where the model runs: name it in the requirements"
        )


def _settle(missing: list[ImportRef], named: _Named, inferred: dict[str, str], out: Requirements) -> None:
    """Account for the imports not installed here with the distributions the user named."""
    accounted = set(inferred)
    left: list[ImportRef] = []
    for ref in missing:
        if ref.top == "blankly":  # every model requires it, installed here or not (_blankly_and_numpy)
            continue
        providers = sorted(n for n in named.names if provides(n, ref.top))
        if providers:
            accounted.update(providers)
            shown = ", ".join(f"`{_line(named, n)}` ({named.where[n]})" for n in providers)
            out.notes.append(f"{ref.where}: `{ref.top}` is not installed here; {shown} provides it")
        else:
            left.append(ref)
    spare = sorted(n for n in named.names if n not in accounted and not _known_modules(n))
    required = [r for r in left if not r.optional and not r.deferred]
    for ref in left:
        if ref.optional:
            out.notes.append(
                f"{ref.where}: optional import `{ref.top}` is not installed here; left out of requirements.txt"
            )
    deferred = [r for r in left if r.deferred and not r.optional]
    if deferred:
        out.notes.append(
            "imported inside functions of local modules and not installed here: "
            + ", ".join(f"{r.top} ({r.where})" for r in deferred)
            + "; add them to the requirements if the model calls them"
        )
    if required and spare:
        out.notes.append(
            f"{', '.join(f'`{_line(named, n)}`' for n in spare)} (named in the requirements, not installed here) "
            f"assumed to provide {', '.join(f'`{r.top}` ({r.where})' for r in required)}"
        )
    elif required:
        out.problems.extend(_not_provided(ref) for ref in required)


def _line(named: _Named, name: str) -> str:
    return (named.user.get(name) or named.notebook.get(name) or name).strip()


def _not_provided(ref: ImportRef) -> str:
    known = IMPORT_TO_DISTRIBUTIONS.get(ref.top)
    how = f"`!pip install {known[0]}` in a cell, or --requirements FILE" if known else (
        "a `!pip install` line in a cell, or --requirements FILE"
    )
    its = f"its distribution {known[0]}" if known else "its distribution"
    return (
        f"{ref.where}: module `{ref.top}` is imported but no installed distribution provides it; "
        f"install it here, or name {its} in the requirements ({how})"
    )


def _major(version: Optional[str]) -> int:
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return 0


def _blankly_and_numpy(inferred: dict[str, str], declared: set[str], out: Requirements) -> None:
    """blankly is always there; blankly breaks on numpy 2 (tulipy's compiled ABI).

    Where blankly is not installed (it does not install on Python 3.12 and newer), it
    is required without a version: the server runs the model with the blankly it has."""
    if "blankly" not in inferred:
        version = installed_version("blankly")
        inferred["blankly"] = f"blankly=={version}" if version else "blankly"
        if version is None and "blankly" not in declared:
            out.notes.append(
                "blankly is not installed here, so requirements.txt says `blankly` with no version: the server "
                "runs the model with the blankly it has (name `blankly==X.Y.Z` in the requirements to pin one)"
            )
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
    imports: Iterable[ImportRef],
    *,
    local_modules: Iterable[str] = (),
    user_lines: Sequence[str] = (),
    notebook_lines: Sequence[tuple[str, str]] = (),
) -> Requirements:
    """requirements.txt lines: inferred pins, then ``!pip install`` lines, then the user's (who wins).

    ``notebook_lines`` are (line, where it was found)."""
    out = Requirements([])
    named = _named(user_lines, notebook_lines, out)
    inferred, missing = _infer(imports, set(local_modules), named, out)
    _settle(missing, named, inferred, out)
    _blankly_and_numpy(inferred, named.names, out)
    merged = dict(inferred)
    for name, line in named.notebook.items():
        if has_specifier(line) or name not in merged:
            version = None if has_specifier(line) else installed_version(line.strip())
            merged[name] = f"{line.strip()}=={version}" if version else line
    merged.update(named.user)
    out.lines = named.unnamed + [merged[k] for k in sorted(merged)]
    return out
