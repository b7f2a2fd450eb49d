"""What a run's state means to the person watching it: which states still move, and the words for one.

A backtest's ``status`` and a live model's ``state`` come from the server (see the
server's API page). "building" is a run whose Python environment is being built
first; its answer then carries the build's current step in ``progress``.
"""
from __future__ import annotations

BUILDING = "building"
GETTING_READY = ("starting", BUILDING)  # a live model not running yet
LIVE_ACTIVE = ("starting", BUILDING, "running")  # a live model that runs, or will
LIVE_FINAL = ("stopped", "crashed", "none")  # nothing changes these but a new deploy


def state_text(answer: dict, key: str = "status") -> str:
    """The state as a user reads it: "building the environment: pip: collecting six (1 so far)"."""
    word = str(answer.get(key) or "unknown")
    if word != BUILDING:
        return word
    progress = answer.get("progress")
    return "building the environment" + (f": {progress}" if progress else "")
