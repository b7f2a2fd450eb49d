"""Checking and unpacking an uploaded model zip, without trusting anything in it.

A model zip has one root folder ``model/`` with ``model/blankly.json`` directly
inside. Everything else about it is the uploader's word, so every name is checked
(no absolute paths, no ``..``, no symlinks, no duplicates, no control characters)
and sizes are counted as bytes are really written, never taken from the headers.
"""
from __future__ import annotations

import json
import io
import os
import posixpath
import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..modelzip import (
    DEFAULT_MAIN_SCRIPT,
    DEFAULT_MODEL_TYPE,
    DEFAULT_REQUIREMENTS,
    DEFAULT_WORKING_DIRECTORY,
    MANIFEST,
    MAX_ENTRIES,
    MAX_MANIFEST,
    MAX_UNPACKED,
    MODEL_TYPES,
    ROOT,
)

_CHUNK = 1 << 16
_READ = 1 << 20  # bytes read, and most bytes unpacked, at once while checking CRCs
_SMALL_READ = 4096  # compressed bytes zipfile reads (and unpacks in one go) for bzip2 and lzma
# A member's local header, as zipfile lays it out: signature, versions, flags, method,
# time, date, CRC, sizes, then the lengths of the name and extra field that follow it.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_UTF8_NAME = 0x800
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_PATCHED_OR_STRONG = 0x20 | 0x40  # compressed patched data, strong encryption


class ZipRejected(ValueError):
    """The upload is not a usable model zip; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ZipTooLarge(ZipRejected):
    """The zip is over one of its ZipLimits: too many entries, unpacks to too much (413)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 413)


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = MAX_ENTRIES
    max_uncompressed: int = MAX_UNPACKED
    max_manifest: int = MAX_MANIFEST
    # bzip2 and lzma members are read through zipfile, whose decoders unpack a whole read at
    # once (deflate and stored ones are unpacked in bounded steps); False refuses them too.
    bzip2_lzma: bool = True


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
    if _CONTROL.search(name):
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


def inspect_model_zip(path: str | Path | bytes, limits: ZipLimits = ZipLimits()) -> ModelZipInfo:
    """Check a model zip (a file, or its bytes); raise ZipRejected with a clear message if unusable."""
    if isinstance(path, bytes):
        return _inspect(io.BytesIO(path), limits)
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size <= _READ:
                # Most uploads are small: one read, then every seek and read is in memory.
                return _inspect(io.BytesIO(fh.read()), limits)
            return _inspect(fh, limits)
    except OSError as exc:  # unreadable, or truncated beyond recognition
        raise ZipRejected(f"the uploaded zip cannot be read: {exc.strerror or exc}") from None


def _inspect(fh: BinaryIO, limits: ZipLimits) -> ModelZipInfo:
    try:
        zf = zipfile.ZipFile(fh)
    except zipfile.BadZipFile:
        raise ZipRejected("the uploaded file is not a zip archive") from None
    except (NotImplementedError, ValueError, EOFError, struct.error) as exc:  # e.g. "zip file version 21.8"
        raise ZipRejected(f"the uploaded zip cannot be read: {exc}") from None
    with zf:
        infos = zf.infolist()
        if not infos:
            raise ZipRejected("the zip is empty; it needs a model/ folder with model/blankly.json")
        if len(infos) > limits.max_entries:
            raise ZipTooLarge(f"the zip has {len(infos)} entries, over the limit of {limits.max_entries}")
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
                raise ZipTooLarge(f"the zip unpacks to more than {limits.max_uncompressed} bytes")
            if not info.is_dir():
                files.append(name[len(ROOT):])
        if MANIFEST not in seen:
            raise ZipRejected("the zip has no model/blankly.json directly inside model/")
        info = zf.getinfo(MANIFEST)
        if info.file_size > limits.max_manifest:
            raise ZipRejected("model/blankly.json is too large", 413)
        # A zip whose data is corrupt but whose directory is fine passes the checks
        # above: read every member once and check its size and CRC, keeping the manifest.
        raw = b""
        try:
            for member in infos:
                data = _check_member(fh, zf, member, limits, keep=member.filename == MANIFEST)
                if member.filename == MANIFEST:
                    raw = data
        except ZipRejected:
            raise
        except (OSError, ValueError, EOFError) as exc:  # offsets past the end, and the like
            raise ZipRejected(f"the zip is damaged: {exc}") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ZipRejected(f"model/blankly.json is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ZipRejected("model/blankly.json must hold a JSON object")

    def text(key: str, default: str) -> str:
        value = manifest.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ZipRejected(f"blankly.json key {key!r} must be a non-empty string")
        return value

    workdir = _relative(text("working_directory", DEFAULT_WORKING_DIRECTORY))
    main = _relative(text("main_script", DEFAULT_MAIN_SCRIPT))
    reqs = _relative(text("requirements", DEFAULT_REQUIREMENTS))
    file_set = set(files)
    if main not in file_set:
        raise ZipRejected(
            f"blankly.json main_script {manifest.get('main_script', DEFAULT_MAIN_SCRIPT)!r} "
            f"is not in the zip (expected model/{main})"
        )
    if reqs not in file_set:
        raise ZipRejected(
            f"blankly.json requirements {manifest.get('requirements', DEFAULT_REQUIREMENTS)!r} "
            f"is not in the zip (expected model/{reqs})"
        )
    model_type = manifest.get("type", DEFAULT_MODEL_TYPE)
    if model_type not in MODEL_TYPES:
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


def _damaged(info: zipfile.ZipInfo, why: str) -> ZipRejected:
    return ZipRejected(f"zip entry {info.filename!r} is damaged ({why})")


def _check_member(
    fh: BinaryIO, zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits, keep: bool
) -> bytes:
    """Read one member's data straight from the file and check its size and CRC.

    The same checks as ``zipfile`` makes when it reads (local header, name, CRC), done
    here because ``ZipFile.testzip`` costs several times more per member on the small
    zips that are most uploads. Unpacking is bounded by the declared size, so a lying
    member is stopped there. Returns the data if ``keep``, else ``b""``.
    """
    fh.seek(info.header_offset)
    header = fh.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise _damaged(info, "no local header where the zip's directory points")
    fields = _LOCAL_HEADER.unpack(header)
    flags, name_len, extra_len = fields[3], fields[10], fields[11]
    raw_name = fh.read(name_len)
    try:  # ASCII reads the same in both encodings, and decodes fastest as ASCII
        local_name = raw_name.decode(
            "ascii" if raw_name.isascii() else "utf-8" if flags & _UTF8_NAME else "cp437"
        )
    except UnicodeDecodeError:
        local_name = None
    if local_name != info.orig_filename:
        raise _damaged(info, "its local header names another file")
    if info.flag_bits & _PATCHED_OR_STRONG:
        raise ZipRejected(f"zip entry {info.filename!r} uses patched data or strong encryption")
    if info.compress_type in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        if not limits.bzip2_lzma:
            raise ZipTooLarge(f"zip entry {info.filename!r} is compressed with bzip2 or lzma")
        return _check_with_zipfile(zf, info, keep)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        unpacker = zlib.decompressobj(-zlib.MAX_WBITS)
    elif info.compress_type == zipfile.ZIP_STORED:
        unpacker = None
        if info.compress_size != info.file_size:
            raise _damaged(info, "stored uncompressed, yet its two sizes differ")
    else:
        raise ZipRejected(
            f"zip entry {info.filename!r} uses compression method {info.compress_type}, "
            "which the server cannot read; zip with deflate (or store)"
        )
    fh.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    crc, size, kept, left = 0, 0, [], info.compress_size
    try:
        while left > 0:
            chunk = fh.read(min(left, _READ))
            if not chunk:
                raise _damaged(info, "its data is cut short")
            left -= len(chunk)
            while chunk:
                if unpacker is None:
                    data, chunk = chunk, b""
                else:
                    data = unpacker.decompress(chunk, _READ)
                    chunk = unpacker.unconsumed_tail
                size += len(data)
                if size > info.file_size:
                    raise _damaged(info, "it unpacks to more than its declared size")
                crc = zlib.crc32(data, crc)
                if keep:
                    kept.append(data)
        if unpacker is not None:
            data = unpacker.flush()
            size += len(data)
            crc = zlib.crc32(data, crc)
            if keep:
                kept.append(data)
    except zlib.error:
        raise _damaged(info, "its compressed data is invalid") from None
    if size != info.file_size or crc != info.CRC:
        raise _damaged(info, "CRC mismatch")
    return b"".join(kept)


def _check_with_zipfile(zf: zipfile.ZipFile, info: zipfile.ZipInfo, keep: bool) -> bytes:
    """bzip2 and lzma members (rare): zipfile reads them, stops at the declared size and
    checks their CRC at the end. Small reads: each one is unpacked whole."""
    kept = []
    try:
        with zf.open(info) as src:
            while True:
                data = src.read(_SMALL_READ)
                if not data:
                    break
                if keep:
                    kept.append(data)
    except Exception as exc:  # noqa: BLE001 - any decoder error on hostile data means damaged
        raise _damaged(info, str(exc) or type(exc).__name__) from None
    return b"".join(kept)


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
                        raise ZipTooLarge(f"the zip unpacks to more than {limits.max_uncompressed} bytes")
                    out.write(chunk)
            # Keep the executable bit if it was set; never setuid or world-writable.
            mode = (info.external_attr >> 16) & 0o755
            if mode:
                target.chmod(mode | 0o600)
    return dest


def remove_tree(path: str | Path) -> None:
    """Remove a run or upload directory, ignoring one that is already gone."""
    shutil.rmtree(path, ignore_errors=True)
