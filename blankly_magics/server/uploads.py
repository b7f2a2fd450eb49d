"""Receiving a multipart upload straight to disk, counting bytes as they arrive.

Starlette's own form parser spools files to the system temp dir and has no cap
on a file's size, so the body is fed here, chunk by chunk, to python-multipart's
streaming parser: the zip goes to a 0600 temp file under the data dir (hashed on
the way), small text fields are kept in memory with their own caps, and the
upload stops with 413 the moment it passes the limit. Nothing is held whole.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

FILE_FIELD = "model"
MAX_FIELDS = 100
MAX_FIELD_BYTES = 1 << 20  # a text field (backtestArgs, descriptions) stays under 1 MiB
FORM_OVERHEAD = 2 << 20  # room for the text fields and part headers beside the zip


class UploadError(Exception):
    """The upload cannot be used; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Upload:
    """A received upload: the text fields, and the zip in a temp file (or None)."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Optional[Path] = None
    size: int = 0
    sha256: str = ""
    filename: str = ""

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


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
    """python-multipart callbacks that sort parts into text fields and the one zip file."""

    def __init__(self, tmp_dir: Path, limit: int) -> None:
        self.tmp_dir = tmp_dir
        self.limit = limit
        self.upload = Upload()
        self._digest = hashlib.sha256()
        self._fd: Optional[int] = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part_kind = ""  # "file", "field" or "skip"
        self._part_name = ""
        self._field_data = bytearray()
        self._skipped = 0

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._headers = {}
        self._field_data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise UploadError("a multipart part has no Content-Disposition form-data name")
        try:
            self._part_name = options[b"name"].decode("utf-8")
        except UnicodeDecodeError:
            raise UploadError("a multipart field name is not UTF-8") from None
        if self._part_name == FILE_FIELD:
            if self._fd is not None or self.upload.path is not None:
                raise UploadError(f"the upload has more than one '{FILE_FIELD}' file; send one zip")
            self._part_kind = "file"
            filename = options.get(b"filename", b"")
            self.upload.filename = filename.decode("utf-8", "replace")[:255]
            try:
                fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.tmp_dir)
            except OSError as exc:  # a full or read-only disk: say so, do not crash the request
                raise UploadError(
                    f"the server could not store the upload: {exc.strerror or exc}", 503
                ) from None
            self._fd = fd
            self.upload.path = Path(name)
        elif b"filename" in options:
            self._part_kind = "skip"  # a file in a field we do not use: count it, keep nothing
        else:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise UploadError(f"the upload has more than {MAX_FIELDS} form fields")
            self._part_kind = "field"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part_kind == "file":
            self.upload.size += len(chunk)
            if self.upload.size > self.limit:
                raise UploadError(too_large_message(self.limit), 413)
            self._digest.update(chunk)
            _write_all(self._fd, chunk)  # type: ignore[arg-type]
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

    def on_part_end(self) -> None:
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
            self.upload.sha256 = self._digest.hexdigest()

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.upload.discard()


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

    The caller owns the result and must ``discard()`` it once the file has been moved
    or rejected.
    """
    mime, options = parse_options_header(content_type)
    if mime != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(
            f"send the model as multipart/form-data with the zip in field '{FILE_FIELD}'"
        )
    receiver = _Receiver(tmp_dir, limit)
    try:
        parser = MultipartParser(options[b"boundary"], receiver.callbacks())
    except (FormParserError, ValueError) as exc:
        raise UploadError(f"the multipart boundary is not usable: {exc}") from None
    total = 0
    try:
        async for chunk in body:
            total += len(chunk)
            if total > limit + FORM_OVERHEAD:
                raise UploadError(too_large_message(limit), 413)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise UploadError(f"the multipart body is malformed: {exc}") from None
        try:
            parser.finalize()
        except FormParserError as exc:
            raise UploadError(f"the multipart body is malformed: {exc}") from None
        if receiver._part_kind:
            raise UploadError("the multipart body ended in the middle of a part")
    except BaseException:
        receiver.abort()
        raise
    receiver._close_file()
    return receiver.upload
