"""How sizes and times read wherever the package shows them."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Optional


def size_text(n: float) -> str:
    """``512 B``, ``1.5 KB``, ``3.2 MB``, ``1.1 GB`` (powers of 1024)."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}"
    return f"{n:.1f} GB"


MILLISECONDS_FROM = 1e11  # a stamp this large is in milliseconds (1e11 s is the year 5138)


def epoch_seconds(value: Any) -> Optional[float]:
    """A stamp as epoch seconds: a number (seconds, or milliseconds as JavaScript and pandas send),
    numeric text, or ISO text (as other servers send); None if unreadable."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return number / 1000.0 if abs(number) > MILLISECONDS_FROM else number
    return None


def time_text(value: Any, *, seconds: bool = True, utc: bool = False) -> str:
    """A stamp (see epoch_seconds) as ``YYYY-MM-DD HH:MM[:SS]``, local time unless ``utc`` (market data's
    clock); the value as given if unreadable, ``?`` when there is none."""
    stamp = epoch_seconds(value)
    if stamp is None:
        return str(value) if value not in (None, "") else "?"
    try:
        when = time.gmtime(stamp) if utc else time.localtime(stamp)
        return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", when)
    except (OverflowError, OSError, ValueError):
        return str(value)


def duration_text(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 4 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
