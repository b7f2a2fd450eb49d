"""Reading a run's log: all of it, its last lines, only what is new, or following it as it grows.

The server pages a log by byte offset (``{"text", "offset", "size", ...}``); a
:class:`LogSource` says how to fetch a page and whether the run still writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from . import interrupts
from .feedback import Feedback
from .states import LIVE_ACTIVE

if TYPE_CHECKING:
    from ..session import Session

MAX_PAGES = 10_000  # a bound, not a loop forever against a confused server
FOLLOW_POLL = 0.2  # the least pause between polls of a quiet log


@dataclass
class LogSource:
    """Where a log comes from: ``fetch(offset)`` gives the page there; ``running(page)`` says
    whether more may come."""

    what: str  # "backtest B1", "model M1": for messages
    fetch: Callable[[int], dict]
    running: Callable[[dict], bool]


def backtest_log(session: "Session", backtest_id: str) -> LogSource:
    client = session.client
    return LogSource(f"backtest {backtest_id}", lambda offset: client.backtest_logs(backtest_id, offset=offset),
                     lambda page: not page.get("complete"))


def model_log(session: "Session", model_id: str) -> LogSource:
    client = session.client
    return LogSource(f"model {model_id}", lambda offset: client.model_logs(model_id, offset=offset),
                     lambda page: client.deployment(model_id).get("state") in LIVE_ACTIVE)


class LogCursor:
    """Reads a log onwards from where it last stopped (the panel's Logs button, ``--follow``)."""

    def __init__(self, source: LogSource, offset: int = 0) -> None:
        self.source = source
        self.offset = offset
        self.last_page: dict = {}

    def read(self) -> str:
        """Everything written since the last read."""
        parts = []
        for _ in range(MAX_PAGES):
            page = self.source.fetch(self.offset)
            self.last_page = page
            text = page.get("text") or ""
            parts.append(text)
            nxt = int(page.get("offset") or self.offset)
            if not text or nxt <= self.offset:
                break
            self.offset = nxt
            if nxt >= int(page.get("size") or 0):
                break
        return "".join(parts)


def read_all(source: LogSource) -> str:
    """The whole log as it is now."""
    return LogCursor(source).read()


def tail_bytes(source: LogSource, limit: int = 8192) -> str:
    """About the last ``limit`` bytes of the log, in one or two requests."""
    first = source.fetch(0)
    size = int(first.get("size") or 0)
    if size > limit and int(first.get("offset") or 0) < size:
        return source.fetch(size - limit).get("text") or ""
    return first.get("text") or ""


def last_lines(text: str, tail: int) -> tuple[list[str], str]:
    """The last ``tail`` lines of ``text`` (all with 0) and the line saying what was left out, if any."""
    lines = text.rstrip("\n").splitlines()
    if tail and len(lines) > tail:
        return lines[-tail:], f"(last {tail} of {len(lines)} lines; --tail 0 shows all)"
    return lines, ""


def show(source: LogSource, feedback: Feedback, *, tail: int = 200) -> None:
    """The log's last ``tail`` lines as notes."""
    lines, cut = last_lines(read_all(source), tail)
    if cut:
        feedback.note(cut)
    feedback.note("\n".join(lines) if lines else f"(no log lines yet for {source.what})")


def follow(source: LogSource, feedback: Feedback, *, tail: int = 200, poll: float = 0.5) -> None:
    """The log's last ``tail`` lines, then each new piece as it comes (``feedback.write``), until
    the run stops writing or the user stops following."""
    cursor = LogCursor(source)
    try:
        lines, cut = last_lines(cursor.read(), tail)
        if cut:
            feedback.note(cut)
        if lines:
            feedback.write("\n".join(lines) + "\n")
        while True:
            text = cursor.read()
            if text:
                feedback.write(text)
            elif not source.running(cursor.last_page):
                feedback.note(f"({source.what} is not running any more)")
                return
            else:
                feedback.cancel.sleep(max(poll, FOLLOW_POLL))
    except interrupts.STOPS:
        feedback.cancel.request()  # the face can tell the run was stopped
        feedback.note("\n" + interrupts.while_following(source.what))
