"""Reading a run's log in chunks a client can follow."""
from __future__ import annotations

from pathlib import Path
from typing import Any

LOG_CHUNK = 256 * 1024  # most log bytes one /logs call answers


def read_log(path: Path, offset: int) -> dict[str, Any]:
    """Up to LOG_CHUNK bytes of a log from ``offset``; restarts at 0 if the log was replaced."""
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return {"text": "", "offset": 0, "size": 0}
    if offset > size:
        offset = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(LOG_CHUNK)
    cut = _utf8_cut(data)
    return {"text": data[:cut].decode("utf-8", "replace"), "offset": offset + cut, "size": size}


def _utf8_cut(data: bytes) -> int:
    """Length of ``data`` without a UTF-8 sequence cut off at its end (read it next time)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte or ASCII
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return len(data) - back if need > back and len(data) > back else len(data)
    return len(data)
