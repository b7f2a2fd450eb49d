"""Checking and unpacking an uploaded model zip, without trusting anything in it.

A model zip has one root folder ``model/`` with ``model/blankly.json`` directly
inside. Everything else about it is the uploader's word, so every name is checked
(no absolute paths, no ``..``, no symlinks, no duplicates, no control characters)
and sizes are counted as bytes are really written, never taken from the headers.
"""
from __future__ import annotations

import json
import posixpath
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = "model/"
MANIFEST = ROOT + "blankly.json"
_CHUNK = 1 << 16


class ZipRejected(ValueError):
    """The upload is not a usable model zip; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 10_000
    max_uncompressed: int = 1 << 30  # 1 GiB unpacked: far above any real model
    max_manifest: int = 1 << 20


@dataclass(frozen=True)
class ModelZipInfo:
    """What a checked zip holds; paths are relative to ``model/``."""

    manifest: dict[str, Any]
    main_script: str
    working_directory: str
    requirements: str
    model_type: str
    entries: int
    uncompressed_size: int
    files: tuple[str, ...] = field(default=())


def _clean_member(name: str) -> str:
    """Return a safe relative POSIX path for a zip member or raise ZipRejected."""
    if not name or "\\" in name or "\x00" in name:
        raise ZipRejected(f"zip entry {name!r} has an invalid name (backslash or NUL)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ZipRejected(f"zip entry {name!r} has control characters in its name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ZipRejected(f"zip entry {name!r} is an absolute path; paths must be relative to model/")
    parts = name.rstrip("/").split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise ZipRejected(f"zip entry {name!r} contains '..', '.' or an empty path segment")
    return name


def _relative(path: str, base: str = ".") -> str:
    """Normalise a blankly.json path (``./bot.py``) to a path relative to model/."""
    joined = posixpath.normpath(posixpath.join(base, path))
    if joined.startswith("../") or joined == ".." or joined.startswith("/"):
        raise ZipRejected(f"blankly.json path {path!r} points outside model/")
    return joined


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def inspect_model_zip(path: str | Path, limits: ZipLimits = ZipLimits()) -> ModelZipInfo:
    """Check a model zip on disk; raise ZipRejected with a clear message if unusable."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ZipRejected("the uploaded file is not a zip archive") from None
    except OSError as exc:  # truncated beyond recognition
        raise ZipRejected(f"the uploaded zip cannot be read: {exc.strerror or exc}") from None
    with zf:
        infos = zf.infolist()
        if not infos:
            raise ZipRejected("the zip is empty; it needs a model/ folder with model/blankly.json")
        if len(infos) > limits.max_entries:
            raise ZipRejected(
                f"the zip has {len(infos)} entries, over the limit of {limits.max_entries}", 413
            )
        seen: set[str] = set()
        files: list[str] = []
        total = 0
        for info in infos:
            name = _clean_member(info.filename)
            if name in seen:
                raise ZipRejected(f"zip entry {name!r} appears twice")
            seen.add(name)
            if _is_symlink(info):
                raise ZipRejected(f"zip entry {name!r} is a symlink; symlinks are not allowed")
            if not (name == ROOT or name.startswith(ROOT)):
                raise ZipRejected(
                    f"zip entry {name!r} is outside the single root folder model/ "
                    "(zip the model folder itself, so every path starts with model/)"
                )
            if info.flag_bits & 0x1:
                raise ZipRejected(f"zip entry {name!r} is encrypted")
            total += info.file_size
            if total > limits.max_uncompressed:
                raise ZipRejected(
                    f"the zip unpacks to more than {limits.max_uncompressed} bytes", 413
                )
            if not info.is_dir():
                files.append(name[len(ROOT):])
        if MANIFEST not in seen:
            raise ZipRejected("the zip has no model/blankly.json directly inside model/")
        info = zf.getinfo(MANIFEST)
        if info.file_size > limits.max_manifest:
            raise ZipRejected("model/blankly.json is too large", 413)
        try:
            with zf.open(info) as fh:
                raw = fh.read(limits.max_manifest + 1)
            manifest = json.loads(raw.decode("utf-8"))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
            raise ZipRejected(f"model/blankly.json is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise ZipRejected("model/blankly.json must hold a JSON object")
        # A zip whose data is corrupt but whose directory is fine passes the
        # checks above; testzip reads every member and verifies its CRC.
        try:
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
            raise ZipRejected(f"the zip is damaged: {exc}") from None
        if bad is not None:
            raise ZipRejected(f"zip entry {bad!r} is damaged (CRC mismatch)")

    def text(key: str, default: str) -> str:
        value = manifest.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ZipRejected(f"blankly.json key {key!r} must be a non-empty string")
        return value

    workdir = _relative(text("working_directory", "."))
    main = _relative(text("main_script", "./bot.py"))
    reqs = _relative(text("requirements", "./requirements.txt"))
    file_set = set(files)
    if main not in file_set:
        raise ZipRejected(
            f"blankly.json main_script {manifest.get('main_script', './bot.py')!r} "
            f"is not in the zip (expected model/{main})"
        )
    if reqs not in file_set:
        raise ZipRejected(
            f"blankly.json requirements {manifest.get('requirements', './requirements.txt')!r} "
            f"is not in the zip (expected model/{reqs})"
        )
    model_type = manifest.get("type", "strategy")
    if model_type not in ("strategy", "screener"):
        raise ZipRejected("blankly.json type must be 'strategy' or 'screener'")
    return ModelZipInfo(
        manifest=manifest,
        main_script=main,
        working_directory=workdir,
        requirements=reqs,
        model_type=model_type,
        entries=len(infos),
        uncompressed_size=total,
        files=tuple(sorted(files)),
    )


def safe_extract(path: str | Path, dest: str | Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Unpack a checked zip's ``model/`` folder into ``dest``; return ``dest``.

    Sizes are counted as bytes are written, so a zip that lies about its sizes
    is stopped at the limit. ``dest`` must not exist yet or be empty.
    """
    inspect_model_zip(path, limits)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = _clean_member(info.filename)
            rel = name[len(ROOT):]
            if not rel:
                continue
            target = (root / rel).resolve()
            if root not in target.parents and target != root:
                raise ZipRejected(f"zip entry {name!r} would land outside the run directory")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while True:
                    chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > limits.max_uncompressed:
                        raise ZipRejected(
                            f"the zip unpacks to more than {limits.max_uncompressed} bytes", 413
                        )
                    out.write(chunk)
            # Keep the executable bit if it was set; never setuid or world-writable.
            mode = (info.external_attr >> 16) & 0o755
            if mode:
                target.chmod(mode | 0o600)
    return dest


def remove_tree(path: str | Path) -> None:
    """Remove a run or upload directory, ignoring one that is already gone."""
    shutil.rmtree(path, ignore_errors=True)
