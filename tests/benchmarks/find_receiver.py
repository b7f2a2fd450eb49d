"""The upload receiver with a hand-written splitter over ``bytes.find``: the alternative
the multipart benchmark measures python-multipart's streaming parser against.

Everything but the splitting is the server's own (``uploads._Receiver``): the zip hashed,
held in memory or streamed to a temp file, the caps, the field rules, the errors. Only
``write`` and ``finish`` differ: a small state machine finds each delimiter with
``bytes.find``, reads a part's headers whole and passes its data on, less a tail that
could be the start of the next delimiter.

    python -m tests.benchmarks.find_receiver --data-dir DIR ...   # the real server, this splitter
"""
from __future__ import annotations

import sys
from pathlib import Path

from blankly_magics.server import uploads
from blankly_magics.server.uploads import UploadError

MAX_HEADERS = 16 * 1024  # one part's header lines together
_MAX_PADDING = 1024  # spaces a sender may put after a boundary (RFC 2046 "transport padding")
_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _DATA, _DONE = range(5)


def _disposition_of(block: bytes) -> bytes:
    """The Content-Disposition value among a part's header lines (the last one wins)."""
    disposition = b""
    for line in block.split(b"\r\n") if block else ():
        name, colon, value = line.partition(b":")
        if not colon:
            raise UploadError("the multipart body is malformed: a part header has no ':'")
        if name.strip().lower() == b"content-disposition":
            disposition = value.strip()
    return disposition


class FindReceiver(uploads._Receiver):
    """``uploads._Receiver`` fed by a ``bytes.find`` state machine instead of python-multipart."""

    def __init__(self, boundary: bytes, tmp_dir: Path, limit: int) -> None:
        super().__init__(boundary, tmp_dir, limit)
        # The body is read as if it began with CRLF, so the first boundary is found
        # as a delimiter like every other one (whatever preamble comes before it).
        self._delimiter = b"\r\n--" + boundary
        self._keep = len(self._delimiter) - 1  # a tail that may be a delimiter cut in two
        self._buffer = b"\r\n"
        self._state = _PREAMBLE

    def write(self, chunk: bytes) -> None:
        data = self._buffer + chunk if self._buffer else chunk
        delimiter, pos = self._delimiter, 0  # pos: where the unread bytes of data start
        while True:
            state = self._state
            if state == _DATA:
                at = data.find(delimiter, pos)
                if at < 0:
                    cut = len(data) - self._keep
                    if cut > pos:
                        self._data(data[pos:cut])
                        pos = cut
                    break
                if at > pos:
                    self._data(data[pos:at])
                self._end_part()
                pos = at + len(delimiter)
                self._state = _AFTER_DELIMITER
            elif state == _AFTER_DELIMITER:
                # "--" closes the body; otherwise optional spaces, then CRLF and a part.
                if data.startswith(b"--", pos):
                    self._state = _DONE
                    continue
                end = data.find(b"\r\n", pos)
                if end < 0:  # the line goes on in the next chunk: wait, unless it is wrong already
                    line = data[pos:]
                    # (a lone "-" may be the first half of "--", a last "\r" the first of CRLF)
                    padding = line[:-1] if line.endswith(b"\r") else line
                    if line != b"-" and (padding.strip(b" \t") or len(line) > _MAX_PADDING):
                        raise UploadError("the multipart body is malformed: junk after a boundary")
                    break
                if data[pos:end].strip(b" \t") or end - pos > _MAX_PADDING:
                    raise UploadError("the multipart body is malformed: junk after a boundary")
                pos = end + 2
                self._state = _HEADERS
            elif state == _HEADERS:
                if data.startswith(b"\r\n", pos):  # a part without headers
                    block, after = b"", pos + 2
                else:
                    at = data.find(b"\r\n\r\n", pos)
                    if at < 0:
                        if len(data) - pos > MAX_HEADERS:
                            raise UploadError("a multipart part's headers are too long")
                        break
                    block, after = data[pos:at], at + 4
                self._begin_part(_disposition_of(block))
                pos = after
                self._state = _DATA
            elif state == _PREAMBLE:
                at = data.find(delimiter, pos)
                if at < 0:
                    pos = max(pos, len(data) - self._keep)  # a preamble is skipped, never kept
                    break
                pos = at + len(delimiter)
                self._state = _AFTER_DELIMITER
            else:  # _DONE: the epilogue after the closing boundary is ignored
                pos = len(data)
                break
        self._buffer = data[pos:]

    def finish(self) -> None:
        if self._state == _PREAMBLE:
            raise UploadError(
                "the multipart body does not contain the boundary its Content-Type names"
            )
        if self._state != _DONE:
            raise UploadError("the multipart body ended in the middle of a part")


def main() -> None:
    """Our server, started as ``python -m blankly_magics.server`` is, splitting bodies with FindReceiver."""
    from blankly_magics.server.__main__ import main as serve

    uploads._Receiver = FindReceiver  # type: ignore[misc]  # receive_upload looks it up per request
    sys.argv[0] = "python -m blankly_magics.server"
    sys.exit(serve())


if __name__ == "__main__":
    main()
