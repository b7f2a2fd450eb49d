"""A sweep's price cache: what the first point to complete downloaded, the later points read.

Blankly keeps the bars a backtest fetched in a cache folder (``backtest.json``:
``settings.cache_location``, ``./price_caches`` by default, while
``settings.continuous_caching`` is on) and reads them from there the next time,
as a loop of backtests in a notebook does after its first. The points of a sweep
each start from a fresh copy of the version, so each would fetch the same bars
again (from an exchange: seconds each). Once a point completes, its cache folder
is copied into the version's unpacked copy the later points are copied from: the
points are one user's one version (one trust domain).

Only when every point asks for the same period (the same uploaded backtest args, with
``start_date`` and ``end_date``, which win over a script's own ``to``): Blankly reads
every cached file whose range overlaps the period asked for, whole, so a point with a
shorter period reading a longer one's bars would backtest past its own end (measured:
other metrics than the same point run alone). With one period for all, each point's
request matches the cached file exactly, and reads what it would have fetched.

The copy takes regular files and folders only, never follows a link and skips
anything else a point may have left there, so a point cannot make the server
read outside the point's folder. It is made beside the target and renamed into
place, so a point copied meanwhile sees the whole cache or none of it.
"""
from __future__ import annotations

import base64
import json
import os
import posixpath
import shutil
import stat
import uuid
from pathlib import Path
from typing import Optional, Sequence

from .folders import make_private_tree, open_plain


def one_period(encoded_args: Sequence[Optional[str]]) -> bool:
    """True when the points' uploaded backtest args (``BACKTESTING_ARGS``, base64 JSON) are one
    and pin the period with ``start_date`` and ``end_date``."""
    if not encoded_args or any(a != encoded_args[0] for a in encoded_args):
        return False
    try:
        args = json.loads(base64.b64decode(encoded_args[0] or ""))
    except (ValueError, TypeError):
        return False
    return isinstance(args, dict) and args.get("start_date") is not None and args.get("end_date") is not None


def cache_folder(model: Path, working_directory: str) -> Optional[str]:
    """The cache folder's path within ``model`` (relative, ``/``-separated) when the version's
    ``backtest.json`` keeps one inside the model's folder, else None."""
    try:
        settings = json.loads((model / working_directory / "backtest.json").read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(settings, dict) or settings.get("continuous_caching") is not True:
        return None
    location = settings.get("cache_location")
    if not isinstance(location, str) or not location or posixpath.isabs(location):
        return None
    relative = posixpath.normpath(posixpath.join(working_directory, location))
    if relative in (".", "") or relative.startswith("../") or relative == "..":
        return None
    return relative


def share(point_model: Path, template: Path, relative: str, owner: Optional[tuple[int, int]]) -> bool:
    """Copy ``point_model/relative`` to ``template/relative`` unless the template has one already;
    True when the template holds the point's cache now."""
    source, target = point_model / relative, template / relative
    if os.path.lexists(target) or not _plain_folder(point_model, source):
        return False
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}"
    try:
        _copy_plain(source, staging)
        make_private_tree(staging, owner)
        os.rename(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


def _plain_folder(root: Path, folder: Path) -> bool:
    """``folder`` is a real folder inside ``root``, reached through no link."""
    path = root
    for part in folder.relative_to(root).parts:
        path = path / part
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
    return True


def _copy_plain(source: Path, target: Path) -> None:
    os.mkdir(target, 0o700)
    with os.scandir(source) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _copy_plain(Path(entry.path), target / entry.name)
            elif entry.is_file(follow_symlinks=False):
                try:
                    fd = open_plain(source, entry.name)
                except OSError:  # replaced by something else since it was listed
                    continue
                with os.fdopen(fd, "rb") as data, open(target / entry.name, "xb") as out:
                    shutil.copyfileobj(data, out)
