"""What a flow tells its face while it works, and how a face asks it to stop.

A face (the magics, the panel, the CLI, a script) hands every flow one
:class:`Feedback`: lines to show, a status line updated in place, upload
progress, a sweep's points done, raw log text, how its commands are spelled,
and a :class:`Cancel` the face sets (the panel's Cancel button) and the flow checks. Ctrl-C arrives
as ``KeyboardInterrupt`` instead; :mod:`.interrupts` treats both the same.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import BlanklyError
from ..hints import NOTEBOOK, Hints

Progress = Callable[[int, int], None]
# A sweep's progress: (points ended, points in all, what to say beside it: failures, the best so far)
Points = Callable[[int, int, str], None]


class Interrupted(BlanklyError):
    """The user stopped a flow: Ctrl-C in a notebook or terminal, Cancel in the panel."""

    def __init__(self, message: str = "stopped") -> None:
        super().__init__(message)


class Cancel:
    """A request to stop, shared by the face that asks and the flow that checks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise Interrupted if a stop was asked for."""
        if self._event.is_set():
            raise Interrupted()

    def sleep(self, seconds: float) -> None:
        """Sleep, or raise Interrupted as soon as a stop is asked for (Ctrl-C lands here too)."""
        if self._event.wait(max(0.0, seconds)):
            raise Interrupted()


def _ignore(*_: object) -> None:
    pass


@dataclass
class Feedback:
    """How one face shows a flow. Every callback may be left out; scripts often pass ``Feedback()``."""

    note: Callable[[str], None] = _ignore  # a line the user should read
    status: Callable[[str, str], None] = _ignore  # (text, state word): one line, updated in place
    progress: Optional[Progress] = None  # (bytes sent, bytes in all) of an upload
    points: Optional[Points] = None  # a sweep's points ended (None: its state goes to ``status``)
    write: Callable[[str], None] = _ignore  # raw text, as a followed log delivers it
    hints: Hints = NOTEBOOK  # how the face spells the commands messages point to
    cancel: Cancel = field(default_factory=Cancel)
