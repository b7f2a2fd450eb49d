"""Which installed distribution provides an imported module, read from the installed
metadata (``importlib.metadata``), never guessed from a package index."""
from __future__ import annotations

import functools
import importlib.metadata as metadata
import json
import sys
from typing import Optional


def is_stdlib(module: str) -> bool:
    top = module.split(".", 1)[0]
    return top in sys.stdlib_module_names or top == "__future__"


@functools.lru_cache(maxsize=1)
def _module_map() -> dict[str, list[str]]:
    """Top-level import name -> distributions providing it (slow: computed once per process)."""
    return {k: sorted(set(v)) for k, v in metadata.packages_distributions().items()}


def top_level_modules(dist: metadata.Distribution) -> list[str]:
    """The top-level modules an installed distribution ships (top_level.txt, else its files)."""
    tops = (dist.read_text("top_level.txt") or "").split()
    if tops:
        return tops
    for f in dist.files or ():
        parts = f.parts
        if parts and not parts[0].endswith((".dist-info", ".egg-info")) and parts[0] != "..":
            tops.append(parts[0][:-3] if len(parts) == 1 and parts[0].endswith(".py") else parts[0])
    return sorted(set(tops))


@functools.lru_cache(maxsize=None)
def installed_version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def local_install(dist: str) -> Optional[str]:
    """The folder or file URL a distribution was installed from, if not from an index."""
    try:
        raw = metadata.distribution(dist).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    url = str(info.get("url", ""))
    if "dir_info" in info or url.startswith("file:"):
        return url
    return None


@functools.lru_cache(maxsize=None)
def _same_name_dist(top: str) -> Optional[str]:
    """The distribution named like the module, if it ships that module (the common case).

    This avoids scanning every installed distribution (``packages_distributions``)
    for ``import blankly``, ``import numpy``, ``import pandas``.
    """
    for candidate in dict.fromkeys((top, top.replace("_", "-"))):
        try:
            dist = metadata.distribution(candidate)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        declared = (dist.read_text("top_level.txt") or "").split()
        if top in declared:
            return dist.metadata["Name"] or candidate
        if not declared:
            for f in dist.files or ():
                parts = f.parts
                if parts and (parts[0] == top or parts[0] == top + ".py"):
                    return dist.metadata["Name"] or candidate
            if _editable_ships(candidate, top):
                return dist.metadata["Name"] or candidate
    return None


def _editable_ships(dist: str, top: str) -> bool:
    """An editable install lists no module files: it ships ``top`` when the module is imported from
    the project folder its direct_url.json names."""
    import importlib.util
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    url = local_install(dist)
    if not url or not url.startswith("file:"):
        return False
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    where = spec.origin if spec and spec.origin not in (None, "namespace") else None
    if where is None and spec and spec.submodule_search_locations:
        where = next(iter(spec.submodule_search_locations), None)
    return where is not None and Path(where).resolve().is_relative_to(Path(unquote(urlparse(url).path)).resolve())


def distributions_for(module: str) -> list[str]:
    """Installed distributions that provide ``module`` (a dotted import name)."""
    top = module.split(".", 1)[0]
    if "." not in module:
        same = _same_name_dist(top)
        if same is not None:
            return [same]
    dists = _module_map().get(top, [])
    if len(dists) > 1 and "." in module:
        # A namespace package (``google``): keep the ones that ship the submodule.
        prefix = module.replace(".", "/")
        narrowed = []
        for dist in dists:
            try:
                files = metadata.distribution(dist).files or ()
            except metadata.PackageNotFoundError:
                continue
            if any(str(f).startswith((prefix + "/", prefix + ".")) for f in files):
                narrowed.append(dist)
        dists = narrowed or dists
    return list(dists)
