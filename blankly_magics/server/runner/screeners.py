"""Screeners: a deployed screener runs once per matching minute of its cron schedule (local time).

The model stays "running" between ticks with no process; each tick is one
process (in its own sandbox, with the plan's time limit), and a failed tick is
logged and reported without stopping the schedule.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from .. import cron
from .executor import Prepared, RunFailed
from .logs import LogSink, failure_reason
from .process import STOPPED

if TYPE_CHECKING:
    from .live import Live, LiveModels


def supervise_screener(models: "LiveModels", live: "Live", prepared: Prepared, log: LogSink) -> None:
    text = live.job.schedule or (prepared.manifest.get("screener") or {}).get("schedule")
    try:
        schedule = cron.parse(text or "")
    except cron.CronError as exc:
        raise RunFailed(f"the screener's schedule cannot be used: {exc}") from None
    models.report(live, {"state": "running", "pid": None, "since": dt.datetime.now().timestamp(),
                         "version_id": live.job.version_id, "error": None})
    log.note(f"screener scheduled with {schedule.text!r} (local time)")
    while True:
        when = schedule.next_after(dt.datetime.now())
        if when is None:
            models.end(live, {"state": "stopped", "error": f"schedule {schedule.text!r} never runs again"})
            return
        if live.stop.wait(max(0.0, (when - dt.datetime.now()).total_seconds())):
            models.end(live, {"state": "stopped", "error": None})
            return
        log.note(f"screener run at {when:%Y-%m-%d %H:%M}")
        end = models.run_once(live, prepared, log, {})
        if end.reason == STOPPED:
            models.end(live, {"state": "stopped", "exit_code": end.code, "error": None})
            return
        error = end.reason or (None if end.code == 0 else failure_reason(log.tail(16000), end.code))
        if error:
            log.note(f"screener run failed: {error}")
        models.report(live, {"pid": None, "exit_code": end.code, "error": error, "log_tail": log.tail()})
