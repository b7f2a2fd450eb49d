"""Waiting for a backtest: the pace of its status checks."""
from __future__ import annotations

from blankly_magics.workflow.waiting import next_poll


def test_status_checks_are_quick_at_first_then_back_off_for_a_long_backtest() -> None:
    def schedule(poll: float, hours: float = 1.0) -> list[float]:
        waited, last, sleeps = 0.0, 0.0, []
        while waited < hours * 3600:
            last = next_poll(waited, last, poll)
            sleeps.append(last)
            waited += last
        return sleeps

    sleeps = schedule(0.5)
    quick = sleeps.index(0.5)
    assert 49 <= quick <= 51 and set(sleeps[:quick]) == {0.1}  # a run of a few seconds is seen at once
    assert sleeps[quick:quick + 2] == [0.5, 0.625] and sleeps[-1] == 2.0  # then the configured pace, growing
    assert len(sleeps) < 50 + 3600 / 2 + 20  # an hour's run: one check every 2 s, not 10 a second
    assert max(schedule(5.0)) == 5.0 and schedule(5.0)[60] == 5.0  # a slower pace asked for is kept
    assert set(schedule(0.05, hours=0.001)) == {0.05}  # and a quicker one too
