"""Cron schedules for screeners: parsing, matching, and the next run."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blankly_magics.server import cron

MON_9AM = dt.datetime(2024, 1, 8, 9, 0)  # a Monday


def test_every_minute_matches_every_minute() -> None:
    s = cron.parse("* * * * *")
    assert s.matches(MON_9AM) and s.matches(MON_9AM.replace(minute=37))
    assert s.next_after(MON_9AM) == dt.datetime(2024, 1, 8, 9, 1)


def test_weekday_mornings() -> None:
    s = cron.parse("30 9 * * 1-5")
    assert s.matches(dt.datetime(2024, 1, 8, 9, 30))
    assert not s.matches(dt.datetime(2024, 1, 8, 9, 31))
    assert not s.matches(dt.datetime(2024, 1, 6, 9, 30))  # Saturday
    # From Friday after the run, the next is Monday.
    assert s.next_after(dt.datetime(2024, 1, 12, 9, 30)) == dt.datetime(2024, 1, 15, 9, 30)


def test_steps_lists_names_and_sunday_as_seven() -> None:
    s = cron.parse("*/15 0,12 1 jan,JUL *")
    assert sorted(s.minutes) == [0, 15, 30, 45]
    assert sorted(s.hours) == [0, 12] and sorted(s.months) == [1, 7]
    assert cron.parse("0 0 * * 7").weekdays == cron.parse("0 0 * * sun").weekdays == frozenset({0})
    assert sorted(cron.parse("5-20/5 * * * *").minutes) == [5, 10, 15, 20]
    assert sorted(cron.parse("50/5 * * * *").minutes) == [50, 55]


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    s = cron.parse("0 0 13 * fri")  # the 13th, and every Friday
    assert s.matches(dt.datetime(2024, 2, 13, 0, 0))  # a Tuesday the 13th
    assert s.matches(dt.datetime(2024, 2, 16, 0, 0))  # a Friday
    assert not s.matches(dt.datetime(2024, 2, 14, 0, 0))


def test_macros() -> None:
    assert cron.parse("@daily").next_after(MON_9AM) == dt.datetime(2024, 1, 9, 0, 0)
    assert cron.parse("@hourly").next_after(MON_9AM) == dt.datetime(2024, 1, 8, 10, 0)
    assert cron.parse("@monthly").next_after(MON_9AM) == dt.datetime(2024, 2, 1, 0, 0)


def test_a_date_that_never_comes_gives_no_next_run() -> None:
    assert cron.parse("0 0 31 2 *").next_after(MON_9AM) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "schedule is empty"),
        ("* * * *", "has 4 fields; cron needs 5"),
        ("60 * * * *", "minute field: 60 is outside 0-59"),
        ("* 24 * * *", "hour field: 24 is outside 0-23"),
        ("* * 0 * *", "day of month field: 0 is outside 1-31"),
        ("* * * foo *", "month field: 'foo' is not a number or a name"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("10-5 * * * *", "range '10-5' runs backwards"),
        ("1,,2 * * * *", "empty list item"),
    ],
)
def test_bad_schedules_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(cron.CronError, match=message.replace("(", r"\(").replace("*", r"\*")):
        cron.parse(text)


FIELD = st.one_of(
    st.just("*"),
    st.integers(0, 59).map(str),
    st.tuples(st.integers(1, 20)).map(lambda t: f"*/{t[0]}"),
)


@settings(max_examples=60, deadline=None)
@given(
    minute=FIELD,
    hour=st.one_of(st.just("*"), st.integers(0, 23).map(str), st.just("9-17/2")),
    weekday=st.one_of(st.just("*"), st.integers(0, 7).map(str), st.just("1-5")),
    start=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1)),
)
def test_next_after_is_the_first_matching_minute(minute: str, hour: str, weekday: str,
                                                  start: dt.datetime) -> None:
    s = cron.parse(f"{minute} {hour} * * {weekday}")
    nxt = s.next_after(start)
    assert nxt is not None and nxt > start and s.matches(nxt)
    # No scheduled minute is skipped: walk the minutes in between (at most 8 days here).
    t = start.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    while t < nxt:
        assert not s.matches(t), t
        t += dt.timedelta(minutes=1)
