"""Long polls: ``GET /backtest/status?wait=S`` answers as soon as the backtest's status changes.

The runner reports a backtest's progress from its own threads (lifecycle.py's callback
stores it, then calls ``changed``); a waiting request sleeps on an asyncio event of its
event loop, set through ``call_soon_threadsafe``, so waiting holds no thread. A waiter
also reads the status again every ``RECHECK`` seconds, for a change stored by another path.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Optional, TypeVar

MAX_WAIT = 30.0  # seconds: the most a request may ask to wait
RECHECK = 1.0

T = TypeVar("T")


class StatusWaits:
    """Who waits for which backtest, and waking them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def changed(self, backtest_id: str) -> None:
        """The backtest's stored status may have changed (any thread)."""
        with self._lock:
            waiters = list(self._waiting.get(backtest_id, ()))
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # its loop is closed: the server is stopping
                pass

    async def until_changed(self, backtest_id: str, read: Callable[[], T], same: Callable[[T], bool],
                            wait: float) -> T:
        """``read()`` once it is no longer ``same``, or after ``wait`` seconds, whichever is first."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiting.setdefault(backtest_id, set()).add(entry)
        try:
            deadline = time.monotonic() + min(wait, MAX_WAIT)
            while True:
                event.clear()  # before reading, so a change stored meanwhile is not missed
                value = read()
                left = deadline - time.monotonic()
                if not same(value) or left <= 0:
                    return value
                try:
                    await asyncio.wait_for(event.wait(), min(left, RECHECK))
                except asyncio.TimeoutError:
                    pass
        finally:
            with self._lock:
                waiting = self._waiting.get(backtest_id)
                if waiting is not None:
                    waiting.discard(entry)
                    if not waiting:
                        del self._waiting[backtest_id]


def parse_wait(text: str) -> Optional[float]:
    """The ``wait`` field as seconds (None when not given); ValueError with the reason."""
    if text == "":
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"wait must be a number of seconds from 0 to {MAX_WAIT:g}, not {text[:40]!r}") from None
    if not 0 <= seconds <= MAX_WAIT:  # NaN fails here too
        raise ValueError(f"wait must be a number of seconds from 0 to {MAX_WAIT:g}, not {text[:40]!r}")
    return seconds


__all__ = ["MAX_WAIT", "StatusWaits", "parse_wait"]
