"""Cron schedules for screeners (read by cronsim): the accepted syntax, matching, and the next run."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blankly_magics.server import cron

MON_9AM = dt.datetime(2024, 1, 8, 9, 0)  # a Monday


def runs(text: str, start: dt.datetime = MON_9AM, count: int = 4) -> list[dt.datetime]:
    schedule, out, when = cron.parse(text), [], start
    for _ in range(count):
        when = schedule.next_after(when)
        out.append(when)
    return out


def test_every_minute_matches_every_minute() -> None:
    s = cron.parse("* * * * *")
    assert s.matches(MON_9AM) and s.matches(MON_9AM.replace(minute=37, second=12))
    assert s.next_after(MON_9AM) == dt.datetime(2024, 1, 8, 9, 1)


def test_weekday_mornings() -> None:
    s = cron.parse("30 9 * * 1-5")
    assert s.matches(dt.datetime(2024, 1, 8, 9, 30))
    assert not s.matches(dt.datetime(2024, 1, 8, 9, 31))
    assert not s.matches(dt.datetime(2024, 1, 6, 9, 30))  # Saturday
    # From Friday after the run, the next is Monday.
    assert s.next_after(dt.datetime(2024, 1, 12, 9, 30)) == dt.datetime(2024, 1, 15, 9, 30)


def test_steps_lists_names_and_sunday_as_seven() -> None:
    assert runs("*/15 0,12 1 jan,JUL *", count=5) == [
        dt.datetime(2024, 7, 1, 0, 0), dt.datetime(2024, 7, 1, 0, 15), dt.datetime(2024, 7, 1, 0, 30),
        dt.datetime(2024, 7, 1, 0, 45), dt.datetime(2024, 7, 1, 12, 0)]
    assert runs("0 0 * * 7") == runs("0 0 * * sun") == runs("0 0 * * SUN") == runs("0 0 * * 0")
    assert [t.minute for t in runs("5-20/5 * * * *")] == [5, 10, 15, 20]
    assert [t.minute for t in runs("50/5 * * * *")] == [50, 55, 50, 55]


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    s = cron.parse("0 0 13 * fri")  # the 13th, and every Friday
    assert s.matches(dt.datetime(2024, 2, 13, 0, 0))  # a Tuesday the 13th
    assert s.matches(dt.datetime(2024, 2, 16, 0, 0))  # a Friday
    assert not s.matches(dt.datetime(2024, 2, 14, 0, 0))


def test_macros() -> None:
    assert cron.parse("@daily").next_after(MON_9AM) == dt.datetime(2024, 1, 9, 0, 0)
    assert cron.parse("@midnight").next_after(MON_9AM) == dt.datetime(2024, 1, 9, 0, 0)
    assert cron.parse("@hourly").next_after(MON_9AM) == dt.datetime(2024, 1, 8, 10, 0)
    assert cron.parse("@weekly").next_after(MON_9AM) == dt.datetime(2024, 1, 14, 0, 0)
    assert cron.parse("@monthly").next_after(MON_9AM) == dt.datetime(2024, 2, 1, 0, 0)
    assert cron.parse("@yearly").next_after(MON_9AM) == cron.parse("@annually").next_after(MON_9AM) \
        == dt.datetime(2025, 1, 1, 0, 0)
    assert cron.parse("@Daily").text == "@Daily"  # kept as written


def test_the_ends_of_months_and_nth_weekdays() -> None:
    assert runs("0 0 L * *", count=2) == [dt.datetime(2024, 1, 31), dt.datetime(2024, 2, 29)]
    assert runs("0 0 LW * *", count=3)[2] == dt.datetime(2024, 3, 29)  # March 31st 2024 is a Sunday
    assert runs("0 9 * * 5L", count=1) == [dt.datetime(2024, 1, 26, 9, 0)]  # the last Friday
    assert runs("0 9 * * 1#2", count=1) == [dt.datetime(2024, 2, 12, 9, 0)]  # the second Monday


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "schedule is empty"),
        ("* * * *", "has 4 fields; cron needs 5"),
        ("* * * * * *", "has 6 fields; cron needs 5"),
        ("every monday", "has 2 fields; cron needs 5"),
        ("60 * * * *", "the minute field '60' is not valid cron"),
        ("* 24 * * *", "the hour field '24' is not valid cron"),
        ("* * 0 * *", "the day of month field '0' is not valid cron"),
        ("* * * foo *", "the month field 'foo' is not valid cron"),
        ("* * * * 8", "the day of week field '8' is not valid cron"),
        ("*/0 * * * *", "the minute field '*/0' is not valid cron"),
        ("10-5 * * * *", "the minute field '10-5' is not valid cron"),
        ("1,,2 * * * *", "the minute field '1,,2' is not valid cron"),
        ("0 0 31 2 *", "the day of month field '31' is not valid cron"),  # a date that never comes
    ],
)
def test_bad_schedules_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(cron.CronError) as info:
        cron.parse(text)
    assert message in str(info.value)


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
    minutes = {int(minute)} if minute.isdigit() else set(range(0, 60, int(minute[2:]) if "/" in minute else 1))
    assert nxt.minute in minutes
    days = {(int(weekday) % 7)} if weekday.isdigit() else ({1, 2, 3, 4, 5} if weekday == "1-5" else set(range(7)))
    assert (nxt.weekday() + 1) % 7 in days
    assert (nxt - start) <= dt.timedelta(days=8)
