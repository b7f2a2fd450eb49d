"""Run folders: where one run's files live on the server, and who may touch them.

Layout under ``data_dir/runs``::

    backtests/<backtest_id>/    one backtest's folder
    live/<model_id>/            the model's live run (made afresh at each deploy)
    pids/<kind>-<id>.json       one per running process (see process.reap_leftovers)
    sandbox/passwd, group       the account files a sandbox sees as /etc/passwd and /etc/group

and inside one run's folder::

    output.log   the run's combined output: written by the server only, never shown to the run
    model/       the unpacked version: the run's working copy (the script's folder is its cwd)
    report/      what the blankly_external hook writes (results, events)
    home/        the run's empty private HOME
    tmp/         the run's private /tmp

Only ``model``, ``report``, ``home`` and ``tmp`` are ever visible to the run
(see sandbox.py), so they are the run's disk use, checked against its plan's
allowance. Everything is private whatever the server's umask: folders 0700
and files 0600. When runs are confined under a server that runs as root, those
four folders belong to the run's own unprivileged user id (``owner``) and the
rest stays root's.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ...files import PRIVATE_FILE, private_dir

LOG_NAME = "output.log"
WRITABLE = ("model", "report", "home", "tmp")  # the only folders a run can write
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
REPORT_FILE_MAX = 64 << 20  # larger report files are not handed back (the run's own folder still has them)


def check_id(kind: str, value: str) -> str:
    """An id that can name a folder (no slashes, no dots first); ValueError otherwise."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValueError(f"{kind} {value!r} cannot name a run directory")
    return value


def make_private_tree(root: Path, owner: Optional[tuple[int, int]] = None) -> None:
    """Folders 0700 and files 0600 under ``root`` (0700 for a file its owner may run),
    symlinks untouched; with ``owner`` (uid, gid) everything is handed to that user too."""
    for folder, _dirs, files in os.walk(root):
        _own(folder, owner)
        os.chmod(folder, 0o700)
        for name in files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                _own(path, owner)
                os.chmod(path, PRIVATE_FILE | (mode & stat.S_IXUSR))


def dir_size(root: Path) -> int:
    """Bytes a folder takes on disk, its whole tree (allocated blocks: a sparse file counts as written)."""
    total = 0
    todo = [Path(root)]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += max(getattr(info, "st_blocks", 0) * 512, 0) or info.st_size
            if stat.S_ISDIR(info.st_mode):
                todo.append(Path(entry.path))
    return total


def _own(path: str | Path, owner: Optional[tuple[int, int]]) -> None:
    if owner is not None:
        os.lchown(path, owner[0], owner[1])


@dataclass(frozen=True)
class RunFolder:
    """One run's folder on the server."""

    root: Path

    @property
    def log(self) -> Path:
        return self.root / LOG_NAME

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def reset(self) -> "RunFolder":
        """Remove everything a previous run of this folder left, the log too."""
        shutil.rmtree(self.root, ignore_errors=True)
        private_dir(self.root)
        return self

    def create(self, owner: Optional[tuple[int, int]] = None) -> "RunFolder":
        """Make the writable folders afresh, ``owner``'s (the log, if any, stays)."""
        private_dir(self.root)
        for name in WRITABLE:
            shutil.rmtree(self.root / name, ignore_errors=True)
            _own(private_dir(self.root / name), owner)
        return self

    def disk_use(self) -> int:
        """Bytes the run's writable folders take on disk."""
        return sum(dir_size(self.root / name) for name in WRITABLE)

    def reports(self) -> dict[str, bytes]:
        """The report folder's files (name -> bytes), as an executor hands them back."""
        out: dict[str, bytes] = {}
        try:
            entries = list(os.scandir(self.report))
        except OSError:
            return out
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_size <= REPORT_FILE_MAX:
                    with open(entry.path, "rb") as fh:
                        out[entry.name] = fh.read()
            except OSError:
                continue
        return out

    def clear(self, *, keep_report: bool = True) -> None:
        """Remove what the run wrote (its copy, HOME, /tmp; the report too unless kept): the log stays."""
        for name in WRITABLE:
            if name == "report" and keep_report:
                continue
            shutil.rmtree(self.root / name, ignore_errors=True)


def contained(root: Path, relative: str) -> Path:
    """``root / relative``, refusing a path that leads out of ``root`` through a link.

    A run's code may have replaced any folder inside its copy by a symlink to a
    host path; the server writes there as root (secret files), so it checks first.
    No process of the run is alive when it does (between two starts), so the check holds."""
    path = Path(root) / relative
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        raise ValueError(f"{relative!r} leads out of the run's folder")
    return path


def open_plain(folder: Path, name: str) -> int:
    """A read descriptor on folder/name, never through a link (the folder's or the file's) and never
    waiting on a fifo; OSError when it is not a regular file. For what a run's code left behind."""
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
    finally:
        os.close(folder_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{name} is not a regular file")
    return fd


def write_new(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> Path:
    """Write ``path`` afresh, never through a link a run's code may have left there."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


def read_json_report(reports: dict[str, bytes], name: str) -> Optional[dict[str, Any]]:
    """A JSON object the hook wrote (None when missing or not an object)."""
    import json

    try:
        data = json.loads(reports[name].decode("utf-8"))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
