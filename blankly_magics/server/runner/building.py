"""What an environment build shows: its output apart from the run's log, its steps as progress.

The model's log holds the model's output (and, when a build fails, the build's): the
build writes to a ``BuildLog`` beside it instead, and each step its output shows
("pip: collecting pandas (3 so far)") is handed to the bookkeeping, which reports the
run as "building" with that step as its progress.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Optional

from .logs import LogSink

BUILD_LOG = "build.log"  # an environment build's output, in the run's folder beside its log
_SPAN = re.compile(r"\(([0-9.]+ [kMG]?B)\)")


class BuildLog(LogSink):
    """Where an environment build writes, apart from the run's own log.

    An executor's ``prepare`` is handed this sink: the build's output (venv, pip)
    lands in its file, the runner's notes go on to ``run_log``, and each step the
    output shows is handed to ``on_step`` as one short line. ``show()`` copies the
    build's output into the run's log: for a build that failed."""

    def __init__(self, path: Path, run_log: LogSink, on_step: Callable[[str], None]) -> None:
        super().__init__(path, run_log.max_bytes)
        self.run_log = run_log
        self.on_step = on_step
        self.started: Optional[float] = None  # when the build's first output came; None: nothing was built
        self._partial = ""
        self._collected = 0

    def note(self, text: str) -> None:
        self.run_log.note(text)

    def write(self, data: bytes | str) -> None:
        super().write(data)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if not text:
            return
        if self.started is None:
            self.started = time.monotonic()
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()[-1000:]
        for line in lines:
            step = self._step(line.strip())
            if step:
                self.on_step(step)

    def _step(self, line: str) -> Optional[str]:
        """What a line of the build's output says it is doing, or None."""
        if line.startswith("$ ") and " -m venv " in line:
            return "creating the virtual environment"
        if line.startswith("$ ") and " -m pip install " in line:
            return "pip: reading the requirements"
        if line.startswith("Collecting "):
            self._collected += 1
            return f"pip: collecting {line.split()[1]} ({self._collected} so far)"
        if line.startswith("Downloading "):
            size = _SPAN.search(line)
            return f"pip: downloading {line.split()[1].rsplit('/', 1)[-1]}" + (f" ({size.group(1)})" if size else "")
        if line.startswith("Building wheel for "):
            return f"pip: building {line.split()[3]}"
        if line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            return f"pip: installing {count} package{'s' if count != 1 else ''}"
        return None

    @property
    def seconds(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def done(self) -> None:
        """The build (if any) is over: a file nothing was written to goes (nothing was built)."""
        if self.started is None:
            self.path.unlink(missing_ok=True)

    def show(self) -> None:
        """The build's output (its end, within a few hundred kB) into the run's log."""
        self.run_log.write(self.tail(256 * 1024))
