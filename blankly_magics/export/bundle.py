"""A built model and its reproducible zip.

The zip has one root ``model/``, sorted entries, fixed timestamps and
permissions (``modelzip``), so the same inputs give the same bytes and its
sha256 names a version. Files are streamed from disk, never held whole.
"""
from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional, Union

from ..files import atomic_write
from ..formats import size_text
from ..modelzip import DIR_MODE, FILE_MODE, ROOT, ZIP_TIME
from .cells import CellRef
from .errors import BuildError, ExportError
from .selection import EVERY_CELL

_CHUNK = 1 << 20
ZIP_FILE_MODE = 0o644  # the zip the user asked for is theirs to share, as any file they make

Content = Union[bytes, Path]


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to model/, with "/"
    size: int


@dataclass(repr=False)
class Bundle:
    files: list[BundleFile]
    total_size: int
    requirements: list[str]
    cells: list[CellRef]
    selection: str
    warnings: list[str]
    notes: list[str]
    script: str
    manifest: dict[str, Any]
    main_script: str
    python_version: str
    notebook_name: Optional[str] = None
    entry_from: Optional[str] = None
    parameters: dict[str, Any] = field(default_factory=dict)  # the parameters cell's defaults
    parameters_cell: Optional[str] = None  # that cell, as messages name it (None: there is none)
    _contents: dict[str, Content] = field(default_factory=dict, compare=False)
    _sha256: Optional[str] = field(default=None, compare=False)

    def __repr__(self) -> str:
        return (
            f"Bundle(notebook={self.notebook_name!r}, cells={[c.number for c in self.cells]}, "
            f"files={len(self.files)}, total_size={self.total_size}, requirements={self.requirements!r})"
        )

    # -- the zip

    def _write(self, fh: IO[bytes]) -> None:
        folders = set()
        for rel in self._contents:
            parts = rel.split("/")
            folders.update("/".join(parts[:i]) + "/" for i in range(1, len(parts)))
        entries = sorted([(ROOT + d, None) for d in folders] + [(ROOT + r, r) for r in self._contents])
        sizes = {f.path: f.size for f in self.files}
        with zipfile.ZipFile(fh, "w") as zf:
            zf.writestr(_info(ROOT, directory=True), b"")
            for name, rel in entries:
                if rel is None:
                    zf.writestr(_info(name, directory=True), b"")
                    continue
                content = self._contents[rel]
                if isinstance(content, bytes):
                    zf.writestr(_info(name, directory=False), content)
                else:
                    _stream(zf, _info(name, directory=False), rel, content, sizes[rel])

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        self._write(buf)
        data = buf.getvalue()
        self._sha256 = hashlib.sha256(data).hexdigest()
        return data

    def write_zip(self, path: Union[str, Path]) -> Path:
        """Write the zip atomically: the old file stays whole until the new one is complete."""
        target = Path(path).expanduser()
        if target.is_dir():
            raise ExportError(f"{target} is a folder; give the zip file's path")

        def write(fh: IO[bytes]) -> None:
            self._write(fh)
            fh.flush()
            self._sha256 = _hash_file(fh)

        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            return atomic_write(target, write, mode=ZIP_FILE_MODE)
        except OSError as exc:
            raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None

    @property
    def sha256(self) -> str:
        """sha256 of the zip's bytes (rendered once, spooled to disk when large)."""
        if self._sha256 is None:
            with tempfile.SpooledTemporaryFile(max_size=64 << 20) as fh:
                self._write(fh)
                self._sha256 = _hash_file(fh)
        return self._sha256

    # -- for people

    def summary(self) -> str:
        source = self.notebook_name or "notebook cells"
        head = f"Model from {source}: {len(self.cells)} cell(s) taken ({self.selection})"
        lines = [head + (f"; {EVERY_CELL}" if self.selection == "all" else "")]
        lines.extend(
            f"  {c.label}" + ("" if c.reason == EVERY_CELL else f": {c.reason}") for c in self.cells
        )
        lines.append(
            f"  entry point: {self.entry_from}"
            if self.entry_from
            else "  entry point: none (the script runs the cells top to bottom)"
        )
        lines.append(f"Files ({len(self.files)}, {size_text(self.total_size)}), main script {self.main_script}:")
        width = max((len(f.path) for f in self.files), default=0)
        lines.extend(f"  {f.path.ljust(width)}  {size_text(f.size):>9}" for f in self.files)
        if self.parameters_cell:
            shown = ", ".join(f"{name}={value!r}" for name, value in self.parameters.items()) or "(none)"
            lines.append(f"Parameters, from {self.parameters_cell}: {shown}")
        lines.append(f"Requirements: {', '.join(self.requirements) if self.requirements else '(none)'}")
        lines.append(f"Python: {self.python_version}")
        for title, items in (("Notes", self.notes), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  - {item}" for item in items)
        return "\n".join(lines)


def _info(name: str, *, directory: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.create_system = 3  # unix, so the permission bits below mean what they say
    if directory:
        info.external_attr = (DIR_MODE << 16) | 0x10
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = FILE_MODE << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _stream(zf: zipfile.ZipFile, info: zipfile.ZipInfo, rel: str, path: Path, expected: int) -> None:
    """Copy a file into the zip in chunks; it must still be the size it had at build time."""
    info.file_size = expected
    written = 0
    try:
        with open(path, "rb") as src, zf.open(info, "w", force_zip64=expected >= 1 << 31) as out:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                out.write(chunk)
    except OSError as exc:
        raise BuildError([f"{rel} cannot be read any more ({exc.strerror or exc}); build again"]) from None
    if written != expected:
        raise BuildError([f"{rel} changed on disk since the build ({expected} -> {written} bytes); build again"])


def _hash_file(fh: IO[bytes]) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    while True:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)
