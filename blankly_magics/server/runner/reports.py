"""Reading a report file while its run still appends to it: a page of whole lines at a time.

The hook inside a run appends one JSON line per report to ``report/events.jsonl``.
The server reads it where the run writes it (the local executor's run folder); a run's
code owns that folder, so the file is opened without following links and only when
it is a regular file. An executor whose runs live elsewhere serves the same pages
another way: the bookkeeping only asks ``Runner.live_report``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .folders import open_plain

PAGE_BYTES = 512 << 10


@dataclass(frozen=True)
class ReportPage:
    """Whole lines of a report file: ``data`` starts at ``offset``; the next page at ``next``."""

    data: bytes
    offset: int
    next: int
    size: int  # the file's size when read (0: no such file yet)


def read_report_page(report_dir: Path, name: str, offset: int = 0, limit: int = PAGE_BYTES, *,
                     tail: bool = False) -> ReportPage:
    """The lines from byte ``offset`` (from 0 when the file is shorter: a new run began), at most
    ``limit`` bytes; with ``tail``, the last whole lines within ``limit`` bytes of the end."""
    try:
        fd = open_plain(report_dir, name)
    except OSError:
        return ReportPage(b"", 0, 0, 0)
    try:
        size = os.fstat(fd).st_size
        if tail:
            offset = max(0, size - limit)
        elif offset > size:
            offset = 0
        chunk = os.pread(fd, min(limit, size - offset), offset) if size > offset else b""
    finally:
        os.close(fd)
    if tail and offset > 0:  # the first line is cut: start after it
        cut = chunk.find(b"\n") + 1
        chunk, offset = chunk[cut:], offset + cut
    end = chunk.rfind(b"\n") + 1
    if end == 0 and len(chunk) >= limit:  # one line longer than a page: skipped, never a stall
        return ReportPage(b"", offset, offset + len(chunk), size)
    return ReportPage(chunk[:end], offset, offset + end, size)
