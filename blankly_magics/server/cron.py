"""Five-field cron schedules (minute hour day-of-month month day-of-week), read by ``cronsim``.

Used for screeners, which run once per matching minute (local time) instead of
as a long-running process. Accepted: ``*``, numbers, ``a-b`` ranges, ``/step``,
comma lists, month and weekday names (``jan``, ``mon``, any case), weekday 7 as
Sunday, the macros ``@hourly``, ``@daily``/``@midnight``, ``@weekly``,
``@monthly``, ``@yearly``/``@annually``, and cronsim's ``L`` (last day),
``LW`` (last weekday), ``5L`` (last Friday) and ``1#2`` (second Monday) forms. As in classic cron, when both the day-of-month and the day-of-week
fields are restricted a day matches if either does. A date that never comes
(``0 0 31 2 *``) is refused when the schedule is read.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


class CronError(ValueError):
    """The schedule text is not a valid 5-field cron expression."""


@dataclass(frozen=True)
class Schedule:
    text: str  # as given (a macro stays a macro)
    expression: str  # the five fields

    def next_after(self, when: dt.datetime) -> Optional[dt.datetime]:
        """The first scheduled minute strictly after ``when`` (None if cronsim finds none)."""
        from cronsim import CronSim, CronSimError

        start = when.replace(second=0, microsecond=0)
        try:
            return next(CronSim(self.expression, start), None)
        except CronSimError:  # cannot happen for a parsed schedule; say "never" rather than crash
            return None

    def matches(self, when: dt.datetime) -> bool:
        """True when ``when`` (minute resolution) is a scheduled minute."""
        minute = when.replace(second=0, microsecond=0)
        return self.next_after(minute - dt.timedelta(minutes=1)) == minute


def parse(text: str) -> Schedule:
    """Read a cron expression; CronError naming the bad field."""
    from cronsim import CronSim, CronSimError

    if not isinstance(text, str) or not text.strip():
        raise CronError("the schedule is empty; give a cron expression such as '0 9 * * 1-5'")
    original = text.strip()
    expression = MACROS.get(original.lower(), original)
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(
            f"schedule {original!r} has {len(parts)} fields; cron needs 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'"
        )
    try:
        CronSim(expression, dt.datetime(2000, 1, 1))
    except CronSimError as exc:
        raise CronError(f"schedule {original!r}: {_field_message(str(exc), parts)}") from None
    return Schedule(original, " ".join(parts))


def _field_message(message: str, parts: list[str]) -> str:
    """cronsim says "Bad minute": name the field and what it holds."""
    text = message.strip().rstrip(".")
    for name, part in zip(_FIELDS, parts):
        if text.lower() == f"bad {name.replace('day of ', 'day-of-')}":
            return f"the {name} field {part!r} is not valid cron"
    return text[:1].lower() + text[1:]


def matches(text: str, when: dt.datetime) -> bool:
    return parse(text).matches(when)
