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


def epoch_seconds(value: Any) -> Optional[float]:
    """A stamp as epoch seconds: a number, or ISO text (as other servers send); None if unreadable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            return None
    return None


def time_text(value: Any, *, seconds: bool = True) -> str:
    """A stamp (epoch seconds or ISO text) as local ``YYYY-MM-DD HH:MM[:SS]``; the value as given if unreadable."""
    stamp = epoch_seconds(value)
    if stamp is None:
        return str(value) if value not in (None, "") else "?"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(stamp))
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
