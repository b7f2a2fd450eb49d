"""A run's log: its combined output, bounded in size, and the reason a failed run gives.

The log is the server's file (``RunFolder.log``): an executor streams a run's
output into a ``LogSink``, wherever the process runs, and the server reads it
back for ``/model/logs`` and ``/backtest/logs``.
"""
from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

from ...files import open_private, private_dir


class LogSink:
    """A run's combined output file, bounded in size.

    Bytes are appended as they come (so the log can be followed while a run
    goes on). When the file passes ``max_bytes`` it is rewritten as its first
    ``keep_bytes``, a line saying how much was dropped, and its last
    ``keep_bytes``: the start (imports, setup) and the end (the error) survive.
    """

    def __init__(self, path: Path, max_bytes: int = 4 << 20, keep_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep_bytes = min(keep_bytes, max_bytes // 4)
        self.dropped = 0
        self._lock = threading.Lock()
        self._readers: list[threading.Thread] = []
        private_dir(self.path.parent)
        os.close(open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND))

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if not data:
            return
        with self._lock:
            with open(self.path, "ab") as fh:
                fh.write(data)
                size = fh.tell()
            if size > self.max_bytes:
                self._compact(size)

    def note(self, text: str) -> None:
        """A line from the runner itself, marked so it is not mistaken for the model's output."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.write(f"[blankly_magics {stamp}] {text.rstrip()}\n")

    def _compact(self, size: int) -> None:
        keep = self.keep_bytes
        with open(self.path, "rb") as fh:
            head = fh.read(keep)
            fh.seek(size - keep)
            tail = fh.read(keep)
        self.dropped += size - 2 * keep
        marker = (
            f"\n[blankly_magics: {self.dropped} bytes of output dropped here to keep this log "
            f"under {self.max_bytes // (1 << 20) or 1} MB]\n"
        ).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(open_private(tmp), "wb") as fh:
            fh.write(head + marker + tail)
        os.replace(tmp, self.path)

    def attach(self, stream: Any) -> None:
        """Copy a child's output pipe into the log until it closes."""

        def pump() -> None:
            fd = stream.fileno()
            try:
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    self.write(chunk)
            except OSError:
                pass
            finally:
                stream.close()

        thread = threading.Thread(target=pump, name=f"log-{self.path.parent.name}", daemon=True)
        thread.start()
        self._readers.append(thread)

    def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the pipes to close after the process group is gone."""
        for thread in self._readers:
            thread.join(timeout)
        self._readers = [t for t in self._readers if t.is_alive()]

    def tail(self, max_bytes: int = 4000) -> str:
        return read_tail(self.path, max_bytes)


def read_tail(path: Path, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a log, starting on a whole line ('' if there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if size > max_bytes and "\n" in text:
        text = text.split("\n", 1)[1]
    return text


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|[A-Za-z_][\w.]*)(: .*)?$")


def failure_reason(log_tail: str, exit_code: Optional[int]) -> str:
    """The user-facing reason a run failed: the exception's last line when there is one."""
    lines = log_tail.splitlines()
    last_tb = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")),
                  default=None)
    if last_tb is not None:
        for line in reversed(lines[last_tb + 1:]):
            if line and not line[0].isspace() and not line.startswith("[blankly_magics") \
                    and _EXC_LINE.match(line.strip()):
                return line.strip()[:500]
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exited with code {exit_code}"


_NETWORK_WORDS = ("URLError", "ConnectionError", "ConnectError", "gaierror", "Name or service not known",
                  "Temporary failure in name resolution", "Network is unreachable", "No route to host",
                  "Connection refused", "NewConnectionError", "Max retries exceeded")


def with_network_hint(error: str, network: bool) -> str:
    """A failed run's reason, saying so when it failed reaching the network on a server that gives runs none."""
    if network or not any(word in error for word in _NETWORK_WORDS):
        return error
    return f"{error} (runs have no network on this server: it was started with --run-network off)"
