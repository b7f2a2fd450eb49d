"""Five-field cron schedules (minute hour day-of-month month day-of-week).

Used for screeners, which run once per matching minute (local time) instead of
as a long-running process. Supports ``*``, numbers, ``a-b`` ranges, ``/step``,
comma lists, month and weekday names (``jan``, ``mon``), weekday 7 as Sunday,
and the macros ``@hourly``, ``@daily``/``@midnight``, ``@weekly``,
``@monthly``, ``@yearly``/``@annually``. As in classic cron, when both the
day-of-month and the day-of-week fields are restricted a day matches if
either does.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {n: i + 1 for i, n in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, low, high, names)
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


class CronError(ValueError):
    """The schedule text is not a valid 5-field cron expression."""


@dataclass(frozen=True)
class Schedule:
    text: str
    minutes: frozenset
    hours: frozenset
    days: frozenset
    months: frozenset
    weekdays: frozenset  # 0 = Sunday
    any_day: bool  # day-of-month field is '*'
    any_weekday: bool  # day-of-week field is '*'

    def matches(self, when: dt.datetime) -> bool:
        """True when ``when`` (minute resolution) is a scheduled minute."""
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        return when.month in self.months and self._day_matches(when)

    def next_after(self, when: dt.datetime, limit_days: int = 366 * 5) -> Optional[dt.datetime]:
        """The first scheduled minute strictly after ``when``; None if none within the limit."""
        t = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        end = when + dt.timedelta(days=limit_days)
        while t <= end:
            if t.month not in self.months:
                # Skip to the first minute of next month.
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(t):
                t = (t + dt.timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + dt.timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute in self.minutes:
                return t
            t += dt.timedelta(minutes=1)
        return None

    def _day_matches(self, when: dt.datetime) -> bool:
        weekday = (when.weekday() + 1) % 7  # Python: Monday=0; cron: Sunday=0
        day_ok = when.day in self.days
        weekday_ok = weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok


def _value(token: str, name: str, low: int, high: int, names: dict) -> int:
    key = token.lower()
    if key in names:
        return names[key]
    if not token.isdigit():
        raise CronError(f"cron {name} field: {token!r} is not a number" +
                        (f" or a name ({', '.join(names)})" if names else ""))
    number = int(token)
    if not low <= number <= high:
        raise CronError(f"cron {name} field: {number} is outside {low}-{high}")
    return number


def _field(text: str, name: str, low: int, high: int, names: dict) -> set:
    values: set = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"cron {name} field {text!r} has an empty list item")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"cron {name} field: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if first > last:
                raise CronError(f"cron {name} field: range {base!r} runs backwards")
        else:
            first = _value(base, name, low, high, names)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def parse(text: str) -> Schedule:
    """Parse a cron expression; raise CronError naming the bad field."""
    if not isinstance(text, str) or not text.strip():
        raise CronError("the schedule is empty; give a cron expression such as '0 9 * * 1-5'")
    original = text.strip()
    expr = _MACROS.get(original.lower(), original)
    parts = expr.split()
    if len(parts) != 5:
        raise CronError(
            f"schedule {original!r} has {len(parts)} fields; cron needs 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'"
        )
    sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS)]
    weekdays = {0 if d == 7 else d for d in sets[4]}
    return Schedule(
        text=original,
        minutes=frozenset(sets[0]),
        hours=frozenset(sets[1]),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=frozenset(weekdays),
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )


def matches(text: str, when: dt.datetime) -> bool:
    return parse(text).matches(when)
