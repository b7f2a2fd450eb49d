"""Comparing backtests: each fetched as any backtest is (another user's id is refused as unknown),
labelled by its version, and set side by side in a ``report.Comparison``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..hints import NOTEBOOK, Hints
from .fetch import Versions, result_from
from .lookup import RunError

if TYPE_CHECKING:
    from ..report import Comparison
    from ..session import Session

MAX_COMPARED = 20  # curves beyond this are a tangle, and each is a request


def backtest_ids(ids: Sequence[str], hints: Hints = NOTEBOOK) -> list[str]:
    """The ids to compare, each once, in the order given; at least two, at most MAX_COMPARED."""
    unique = list(dict.fromkeys(str(i).strip() for i in ids if str(i).strip()))
    if len(unique) < 2:
        raise RunError(f"compare needs at least two backtest ids; a model's are listed by {hints.backtests('MODEL')}")
    if len(unique) > MAX_COMPARED:
        raise RunError(f"compare takes at most {MAX_COMPARED} backtests at once; {len(unique)} were given")
    return unique


def compare(session: "Session", ids: Sequence[str], hints: Hints = NOTEBOOK) -> "Comparison":
    """The completed backtests ``ids`` side by side: ``.table`` (a DataFrame, one column per backtest,
    labelled by its version's number, description and date) and ``.figure()`` (the equity curves
    overlaid). An id that is not one of yours is refused as the server refuses it: not found."""
    from ..report import Comparison

    versions = Versions(session)
    results = [result_from(session, session.client.backtest_result(backtest_id), hints, versions=versions)
               for backtest_id in backtest_ids(ids, hints)]
    return Comparison.of(results)
