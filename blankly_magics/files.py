"""Files written whole or not at all, folders only their owner can open, and locks.

One atomic write serves every file the package keeps (tokens, side files, pid
records, server.json, zips): a temporary file beside the target, written,
flushed to disk, given its final mode, then ``os.replace``d over the target, so
a reader sees the old file or the new one and never half of one; an error or an
interrupt leaves no temporary file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Callable, Union

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

Content = Union[bytes, str, Callable[[IO[bytes]], None]]


def private_dir(path: Union[str, Path]) -> Path:
    """``mkdir -p`` where every folder made is 0700, and ``path`` itself 0700 even if it existed.

    Folders above ``path`` that already exist keep their modes. chmod follows
    mkdir because mkdir's mode goes through the umask."""
    path = Path(path)
    missing = []
    parent = path
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another thread or process: tightened all the same
            pass
        os.chmod(folder, PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def open_private(path: Union[str, Path], flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A file descriptor on ``path``, created 0600 (fchmod too: the umask can only take bits away)."""
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def atomic_write(path: Union[str, Path], content: Content, *, mode: int = PRIVATE_FILE, fsync: bool = True) -> Path:
    """Replace ``path`` with ``content`` (bytes, text as UTF-8, or a function writing to a binary file).

    The file has ``mode`` from its first byte; the parent folder must exist.
    Raises OSError as the system reports it (the caller words it for the user)."""
    target = Path(path)
    # mkstemp creates 0600; the tid in the prefix keeps concurrent writers of one target apart.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{threading.get_ident()}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w+b") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def write_json(path: Union[str, Path], data: Any, *, mode: int = PRIVATE_FILE, fsync: bool = True) -> Path:
    """``atomic_write`` of ``data`` as JSON (sorted keys, so equal data gives equal files)."""
    return atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode, fsync=fsync)


def read_json(path: Union[str, Path], default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def file_lock(path: Union[str, Path], timeout: float = -1) -> Any:
    """An exclusive lock held through a lock file (``filelock``), as a context manager.

    ``timeout`` seconds to wait (-1: forever); past it ``filelock.Timeout`` is raised.
    The lock file is created 0600; threads and processes both wait on it."""
    from filelock import FileLock

    return FileLock(str(path), timeout=timeout, mode=PRIVATE_FILE)
