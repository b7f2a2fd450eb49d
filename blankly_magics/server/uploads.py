"""Receiving a multipart upload, counting bytes as they arrive, then putting its zip
in place for good.

Starlette's own form parser spools files to the system temp dir and has no cap
on a file's size, so the body is taken here, chunk by chunk, from python-multipart's
streaming parser: the zip (hashed on the way) is held in memory while it is small,
and otherwise goes to a 0600 temp file under the data dir as it arrives; small text
fields are kept in memory with their own caps, and the upload stops with 413 the
moment it passes the limit. Nothing large is held whole. Once checked, the zip is
written, fsynced and renamed into place by one writer thread (``place``, ``Writer``).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

FILE_FIELD = "model"
MAX_FIELDS = 100
MAX_FIELD_BYTES = 1 << 20  # a text field (backtestArgs, descriptions) stays under 1 MiB
FORM_OVERHEAD = 2 << 20  # room for the text fields and part headers beside the zip
MEMORY_LIMIT = 64 * 1024  # a zip up to this size stays in memory (no temp file to create)
MAX_PART_HEADER = 16 * 1024  # one header line of a part
MAX_PART_HEADER_COUNT = 16  # header lines of one part (clients send two or three)
MAX_BOUNDARY = 200  # RFC 2046 allows 70 characters


class UploadError(Exception):
    """The upload cannot be used; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Upload:
    """A received upload: the text fields, and the zip in memory (``data``, up to
    MEMORY_LIMIT bytes) or in a temp file (``path``); neither when no zip came."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Optional[Path] = None
    data: Optional[bytes] = None
    size: int = 0
    sha256: str = ""
    filename: str = ""

    @property
    def has_zip(self) -> bool:
        return self.path is not None or self.data is not None

    @property
    def source(self) -> "Path | bytes":
        """The zip, for ``zipcheck.inspect_model_zip``."""
        if self.path is not None:
            return self.path
        if self.data is None:
            raise ValueError("the upload has no zip")
        return self.data

    def discard(self) -> None:
        self.data = None
        if self.path is not None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:  # e.g. a read-only tmp/: nothing was written there; startup empties it
                pass
            self.path = None


async def place(upload: Upload, tmp_dir: Path, final: Path, writer: "Writer") -> None:
    """Put the upload's zip at ``final`` for good, on the writer's thread: written to a
    temp file, fsynced, then renamed, so ``final`` never holds part of a zip. On failure
    (OSError, UploadError) ``upload.discard()`` removes what is left.
    """
    if upload.path is None:  # held in memory: written out by the job (named as unique as final)
        upload.path = tmp_dir / f"upload-{final.stem}.part"
    await writer.run(_Job(upload.path, final, upload.data))
    upload.path = upload.data = None


@dataclass
class _Job:
    """One zip to put in place: ``path`` is written (when ``data`` is given) or already
    complete; either way it is fsynced, then renamed to ``final``."""

    path: Path
    final: Path
    data: Optional[bytes]
    error: Optional[BaseException] = None

    def do(self) -> None:
        fd = _create(self.path) if self.data is not None else os.open(self.path, os.O_RDONLY)
        try:
            if self.data is not None:
                _write_all(fd, self.data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.path, self.final)


_Queued = tuple[_Job, "asyncio.Future[None]", asyncio.AbstractEventLoop]


class Writer:
    """One thread that puts uploads in place for the event loop, a batch at a time, so
    that a zip and its name in versions/ are on disk before its row is committed.

    Writing is the only part of an upload that waits for the disk (the fsync). A pool
    thread per upload costs several GIL hand-offs with the event loop each: measured,
    the loop then waits for the GIL after its own socket writes, and uploads per second
    fall by a third. This thread takes every job queued while it was busy, does them
    in a row and wakes the loop once per batch.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Optional[_Queued]] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="upload-writer", daemon=True)
        self._thread.start()

    async def run(self, job: _Job) -> None:
        """Do ``job`` on the writer's thread; raise what it raised. If the caller is
        cancelled meanwhile, the job still ends, and what it placed is removed then."""
        if self._closed:
            raise UploadError("the server is shutting down; try again once it is back", 503)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.put((job, done, loop))
        await done
        if job.error is not None:
            raise job.error

    def close(self) -> None:
        """Finish the jobs queued so far, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get())
            jobs = [item for item in batch if item is not None]
            for job, _, _ in jobs:
                try:
                    job.do()
                except BaseException as exc:  # noqa: BLE001 - raised again in the waiting request
                    job.error = exc
            # The renames too are on disk before any row can point to them: one directory
            # fsync for the whole batch.
            for folder in {job.final.parent for job, _, _ in jobs if job.error is None}:
                try:
                    _fsync_dir(folder)
                except OSError as exc:
                    for job, _, _ in jobs:
                        if job.error is None and job.final.parent == folder:
                            job.error = exc
            if jobs:
                try:
                    jobs[0][2].call_soon_threadsafe(_wake, [(job, done) for job, done, _ in jobs])
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass
            if len(jobs) < len(batch):  # close() was called
                return


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _wake(finished: list[tuple[_Job, asyncio.Future[None]]]) -> None:
    """On the event loop: hand each job's end to its request, or, if that request was
    cancelled meanwhile (it cleaned up before the job ended), undo what the job did."""
    for job, done in finished:
        if not done.cancelled():
            done.set_result(None)
            continue
        for path in (job.path, job.final):
            try:
                path.unlink(missing_ok=True)
            except OSError:  # the startup sweep removes it then
                pass


def _create(path: Path) -> int:
    """A new 0600 file, open for writing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o600)
    except OSError as exc:  # a full or read-only disk: say so, do not crash the request
        raise UploadError(f"the server could not store the upload: {exc.strerror or exc}", 503) from None


def _temp_file(tmp_dir: Path) -> tuple[int, Path]:
    """A new 0600 file in ``tmp_dir``, open for writing (startup empties tmp/)."""
    path = tmp_dir / f"upload-{secrets.token_hex(8)}.part"
    return _create(path), path


def too_large_message(limit: int) -> str:
    return (
        f"the upload is larger than this server accepts ({limit // (1024 * 1024)} MB); "
        "make the model zip smaller or start the server with a larger --max-upload"
    )


def check_declared_length(headers: Any, limit: int) -> None:
    """Refuse at once a body whose Content-Length is already over the cap."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise UploadError("the Content-Length header is not a number") from None
        if length > limit + FORM_OVERHEAD:
            raise UploadError(too_large_message(limit), 413)


class _Receiver:
    """Takes a multipart body chunk by chunk and keeps its text fields and its one zip file.

    python-multipart's streaming parser splits the body; its callbacks pass each part's
    data on as it comes, so nothing large is held whole.
    """

    def __init__(self, boundary: bytes, tmp_dir: Path, limit: int) -> None:
        self.tmp_dir = tmp_dir
        self.limit = limit
        self.upload = Upload()
        self._digest = hashlib.sha256()
        self._fd: Optional[int] = None
        self._held: list[bytes] = []  # the zip while it fits in MEMORY_LIMIT
        self._has_zip = False
        self._part_kind = ""  # "file", "field" or "skip"
        self._part_name = ""
        self._field_data = bytearray()
        self._skipped = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._parts = 0
        self._ended = False
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._on_part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._on_header_end,
            "on_headers_finished": lambda: self._begin_part(self._disposition),
            "on_part_data": lambda data, start, end: self._data(data[start:end]),
            "on_part_end": self._end_part,
            "on_end": self._on_end,
        }, max_header_count=MAX_PART_HEADER_COUNT, max_header_size=MAX_PART_HEADER)

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            if not self._parts:
                raise UploadError(
                    "the multipart body does not start with the boundary its Content-Type names"
                ) from None
            raise UploadError(f"the multipart body is malformed: {' '.join(str(exc).split())}") from None

    def finish(self) -> None:
        if not self._parts:
            raise UploadError(
                "the multipart body does not contain the boundary its Content-Type names"
            )
        if not self._ended:
            raise UploadError("the multipart body ended in the middle of a part")

    def _on_part_begin(self) -> None:
        self._parts += 1
        self._disposition = b""

    def _on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _on_end(self) -> None:
        self._ended = True

    def _begin_part(self, disposition: bytes) -> None:
        name, filename = _disposition(disposition)
        self._part_name = name
        self._field_data = bytearray()
        if name == FILE_FIELD:
            if self._has_zip:
                raise UploadError(f"the upload has more than one '{FILE_FIELD}' file; send one zip")
            self._has_zip = True
            self._part_kind = "file"
            self.upload.filename = (filename or b"").decode("utf-8", "replace")[:255]
        elif filename is not None:
            self._part_kind = "skip"  # a file in a field we do not use: count it, keep nothing
        else:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise UploadError(f"the upload has more than {MAX_FIELDS} form fields")
            self._part_kind = "field"

    def _data(self, chunk: bytes) -> None:
        if self._part_kind == "file":
            self.upload.size += len(chunk)
            if self.upload.size > self.limit:
                raise UploadError(too_large_message(self.limit), 413)
            self._digest.update(chunk)
            if self._fd is not None:
                _write_all(self._fd, chunk)
            elif self.upload.size <= MEMORY_LIMIT:
                self._held.append(chunk)
            else:  # too large to hold: on to disk, from here on as it comes
                self._fd, self.upload.path = _temp_file(self.tmp_dir)
                for held in self._held:
                    _write_all(self._fd, held)
                self._held = []
                _write_all(self._fd, chunk)
        elif self._part_kind == "field":
            self._field_data += chunk
            if len(self._field_data) > MAX_FIELD_BYTES:
                raise UploadError(
                    f"form field {self._part_name!r} is larger than {MAX_FIELD_BYTES} bytes", 413
                )
        else:
            self._skipped += len(chunk)
            if self._skipped > FORM_OVERHEAD:
                raise UploadError(f"unexpected file in field {self._part_name!r}; "
                                  f"send the zip in field '{FILE_FIELD}'", 413)

    def _end_part(self) -> None:
        if self._part_kind == "file":
            self._close_file()
        elif self._part_kind == "field":
            try:
                value = self._field_data.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(f"form field {self._part_name!r} is not UTF-8 text") from None
            self.upload.fields.setdefault(self._part_name, value)
        self._part_kind = ""

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        else:
            self.upload.data = b"".join(self._held)
            self._held = []
        self.upload.sha256 = self._digest.hexdigest()

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._held = []
        self.upload.discard()


# The usual Content-Disposition of a part, as every client writes it; anything else
# (other quoting, RFC 2231 names, extra parameters) goes through the general parser.
_SIMPLE_DISPOSITION = re.compile(rb'form-data; name="([^"\\]*)"(?:; filename="([^"\\]*)")?')


_SIMPLE_CONTENT_TYPE = re.compile(r"multipart/form-data; boundary=([0-9A-Za-z'()+_,./:=?-]{1,70})")


def _boundary(content_type: Optional[str]) -> Optional[bytes]:
    """The boundary of a multipart/form-data Content-Type, or None if it is something else."""
    simple = _SIMPLE_CONTENT_TYPE.fullmatch(content_type or "")
    if simple:  # as clients write it: no need for the general parser
        return simple.group(1).encode("ascii")
    mime, options = parse_options_header(content_type)
    return (options.get(b"boundary") or None) if mime == b"multipart/form-data" else None


def _disposition(value: bytes) -> tuple[str, Optional[bytes]]:
    """(field name, filename or None) of a part's Content-Disposition header."""
    simple = _SIMPLE_DISPOSITION.fullmatch(value)
    if simple:
        raw_name, filename = simple.group(1), simple.group(2)
    else:
        kind, options = parse_options_header(value)
        if kind != b"form-data" or b"name" not in options:
            raise UploadError("a multipart part has no Content-Disposition form-data name")
        raw_name, filename = options[b"name"], options.get(b"filename")
    try:
        return raw_name.decode("utf-8"), filename
    except UnicodeDecodeError:
        raise UploadError("a multipart field name is not UTF-8") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            raise UploadError(
                f"the server could not store the upload: {exc.strerror or exc}", 503
            ) from None
        view = view[written:]


async def receive_upload(
    content_type: Optional[str], body: AsyncIterator[bytes], tmp_dir: Path, limit: int
) -> Upload:
    """Stream a multipart body into an :class:`Upload`; on any error nothing is left on disk.

    The caller owns the result and must ``discard()`` it once the zip has been placed
    or rejected.
    """
    boundary = _boundary(content_type)
    if not boundary:
        raise UploadError(
            f"send the model as multipart/form-data with the zip in field '{FILE_FIELD}'"
        )
    if len(boundary) > MAX_BOUNDARY:
        raise UploadError(f"the multipart boundary is longer than {MAX_BOUNDARY} characters")
    receiver = _Receiver(boundary, tmp_dir, limit)
    total = 0
    try:
        async for chunk in body:
            total += len(chunk)
            if total > limit + FORM_OVERHEAD:
                raise UploadError(too_large_message(limit), 413)
            receiver.write(chunk)
        receiver.finish()
    except BaseException:
        receiver.abort()
        raise
    return receiver.upload
