"""Watching one Ray job from the server: its log split into the model's output and the driver's
frames, its status polled until it ends, and the ways it can end early (a stop, a plan no node
can take, a cluster that stops answering).

A job's log is Ray's preamble (its runtime environment being set up, the entrypoint
line), then what the driver (ray_job/driver.py) and the model write. ``JobLog``
drops the preamble, passes the model's output on (to the run's ``LogSink`` in run
mode, dropped between frames in points mode, where each point's output comes in
its frames), and decodes the frames. It is fed twice: as the log is written
(Ray's websocket tail, ``Follower``), then, once the job has ended, whatever the
tail had not delivered yet (``get_job_logs`` from the character the tail reached),
so a run's end never waits for the tail's own pace.
"""
from __future__ import annotations

import base64
import json
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .executor import RunFailed
from .logs import LogSink
from .process import RunStop
from .ray_cluster import JobState, RayCluster

LOST_AFTER = 300.0  # seconds without an answer from the cluster before a run counts as lost
STOP_WAIT = 30.0  # seconds a stopped job may take to end (Ray: SIGTERM, SIGKILL after 3 s)
TEXT_LINE_MAX = 1 << 20  # a longer line without a newline is passed on as it is
STRAY_KEEP = 4000  # characters of text outside frames kept (points mode) for a failed job's reason


class JobLog:
    """One job's log as it arrives. Thread-safe: the tail and the watcher both feed it."""

    def __init__(self, marker: str, sink: Optional[LogSink], on_frame: Callable[[dict[str, Any]], None],
                 wake: Optional[threading.Event] = None) -> None:
        self.marker = marker
        self.sink = sink  # run mode: the model's output goes here; points mode: None
        self.on_frame = on_frame
        self.wake = wake
        self.consumed = 0  # characters fed so far: where get_job_logs takes over from the tail
        self.begun = False
        self.stray = ""  # the end of what was printed outside frames (the driver's own errors)
        self._partial = ""
        self._chunks: dict[tuple[int, str], list[str]] = {}
        self._lock = threading.RLock()

    def feed(self, text: str) -> None:
        with self._lock:
            self.consumed += len(text)
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                self._line(line + "\n")
            if len(self._partial) > TEXT_LINE_MAX and self.marker not in self._partial:
                self._text(self._partial)
                self._partial = ""

    def complete(self, whole: str) -> None:
        """The job has ended: feed what the tail had not delivered, then any unfinished line."""
        with self._lock:
            if len(whole) > self.consumed:
                self.feed(whole[self.consumed:])
            if self._partial:
                self._line(self._partial)
                self._partial = ""

    def take(self, index: int, kind: str) -> Optional[bytes]:
        """The data a frame sequence carried for (point index, kind), unpacked; None if none came."""
        with self._lock:
            parts = self._chunks.pop((index, kind), None)
        return None if parts is None else zlib.decompress(base64.b64decode("".join(parts)))

    def kinds(self, index: int) -> list[str]:
        with self._lock:
            return [kind for (i, kind) in self._chunks if i == index]

    def _line(self, line: str) -> None:
        at = line.find(self.marker)
        if at < 0:
            self._text(line)
            return
        self._text(line[:at])
        try:
            data = json.loads(line[at + len(self.marker):])
        except ValueError:
            return
        kind = data.get("t")
        if kind == "begin":
            self.begun = True
        elif kind == "data":
            self._chunks.setdefault((int(data["i"]), str(data["kind"])), []).append(str(data["b"]))
            return
        self.on_frame(data)
        if self.wake is not None and kind == "end":
            self.wake.set()

    def _text(self, text: str) -> None:
        if not text or not self.begun:  # before the driver's first frame: Ray's preamble
            return
        if self.sink is not None:
            self.sink.write(text)
        else:
            self.stray = (self.stray + text)[-STRAY_KEEP:]


@dataclass
class Outcome:
    """How watching a job ended."""

    state: Optional[JobState]  # the last state seen (None: the cluster has no such job)
    stopped: bool = False  # stopped by this server (the run's stop event)
    detached: bool = False  # the server is stopping and left the job running
    lost: Optional[str] = None  # the cluster stopped answering: why
    timed_out: bool = False  # stopped by the server's backstop past the plan's time limit
    running_at: Optional[float] = None


def interval(elapsed: float) -> float:
    """Seconds between status polls: often at first (a backtest's end is awaited), rarely later."""
    return 0.1 if elapsed < 5 else 0.25 if elapsed < 60 else 1.0


def watch_job(cluster: RayCluster, submission_id: str, joblog: JobLog, stop: RunStop, *, detached: threading.Event,
              schedule_wait: float, resources: tuple[float, int], on_running: Callable[[float], None],
              note: Callable[[str], None], deadline: Optional[float] = None,
              waiting: Callable[[JobState], bool] = lambda state: state.status == "PENDING") -> Outcome:
    """Follow the job until it ends, is stopped, or is left running; the log is complete on return
    (unless the server detached or lost the cluster). RunFailed when no node can take ``resources``
    while the run is ``waiting`` to be placed (its job pending; a sweep's first point not started)."""
    follower = cluster.follow(submission_id, joblog.feed)
    started = time.monotonic()
    outcome = Outcome(None)
    try:
        outcome = _poll(cluster, submission_id, joblog, stop, detached, schedule_wait, resources, on_running, note,
                        deadline, started, waiting)
        return outcome
    finally:
        follower.close()
        if not outcome.detached and outcome.lost is None:
            try:
                joblog.complete(cluster.logs(submission_id))
            except Exception:  # the job is gone from the cluster: the tail's part is all there is
                joblog.complete("")


def _poll(cluster: RayCluster, submission_id: str, joblog: JobLog, stop: RunStop, detached: threading.Event,
          schedule_wait: float, resources: tuple[float, int], on_running: Callable[[float], None],
          note: Callable[[str], None], deadline: Optional[float], started: float,
          waiting: Callable[[JobState], bool]) -> Outcome:
    running_at: Optional[float] = None
    lost_since: Optional[float] = None
    schedulable = waiting_noted = False
    state: Optional[JobState] = None
    while True:
        now = time.monotonic()
        try:
            state = cluster.state(submission_id)
            if lost_since is not None:
                note("the Ray cluster answers again")
            lost_since = None
        except Exception as exc:
            if lost_since is None:
                lost_since = now
                note(f"lost contact with the Ray cluster at {cluster.address} ({str(exc).splitlines()[0][:200]}); "
                     "retrying")
            if now - lost_since > LOST_AFTER:
                return Outcome(state, lost=f"lost contact with the Ray cluster at {cluster.address} for "
                                          f"{LOST_AFTER:g} s", running_at=running_at)
        else:
            if state is None:
                return Outcome(None, running_at=running_at)
            if running_at is None and (state.status == "RUNNING" or joblog.begun):
                running_at = time.time()
                on_running(running_at)
            if state.terminal:
                return Outcome(state, running_at=running_at)
        if detached.is_set():
            return Outcome(state, detached=True, running_at=running_at)
        if stop.is_set():
            return Outcome(_stop(cluster, submission_id, state), stopped=True, running_at=running_at)
        if state is not None and not state.terminal and waiting(state) and not schedulable \
                and now - started > min(schedule_wait, 2.0):
            reason = cluster.unschedulable(*resources)  # an autoscaler may add a large enough node meanwhile
            schedulable = reason is None
            if reason is not None and now - started >= schedule_wait:
                cluster.stop(submission_id)
                raise RunFailed(reason)
            if reason is not None and not waiting_noted:
                note(f"{reason}; waiting up to {schedule_wait:g} s for one")
                waiting_noted = True
        if deadline is not None and running_at is not None and time.time() - running_at > deadline:
            return Outcome(_stop(cluster, submission_id, state), timed_out=True, running_at=running_at)
        stop.wake.wait(interval(now - started))
        stop.wake.clear()


def _stop(cluster: RayCluster, submission_id: str, state: Optional[JobState]) -> Optional[JobState]:
    cluster.stop(submission_id)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        try:
            state = cluster.state(submission_id)
        except Exception:
            time.sleep(0.5)
            continue
        if state is None or state.terminal:
            return state
        time.sleep(0.1)
    return state


def build_error(state: JobState) -> Optional[str]:
    """The user's reason when the job's runtime environment could not be built (pip's own lines)."""
    if state.error_type != "RUNTIME_ENV_SETUP_FAILURE" and "RuntimeEnvSetupError" not in state.message:
        return None
    lines = [line.strip() for line in state.message.splitlines()]
    pip = [line for line in lines if line.startswith("ERROR:")]
    detail = " ".join(pip) if pip else next((l for l in reversed(lines) if l), "no detail given")
    return f"the model's environment could not be built on the Ray cluster: pip install failed: {detail[:1500]}"
