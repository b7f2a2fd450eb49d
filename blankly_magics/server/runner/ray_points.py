"""A sweep's points on a Ray cluster: ONE job, whose driver runs each point as a Ray task.

The job's package is the version's with ``_blankly/points.json`` added (each
point's run id and variables: ``BACKTESTING_ID``, ``BACKTESTING_ARGS``, ...).
Its entrypoint takes no resources of its own; each point's task asks for the
plan's (``num_cpus`` from ``cpu``, ``memory`` from ``ram``) and is spread over
the nodes (``SPREAD``), at most ``parallel`` at once. A point costs a Ray task
(milliseconds) on top of its own process, where a job per point would cost a
job each (about a second: docs/server/ray.md has the figures).

As each point ends, its output and reports come back as frames of the job's log
and the point is reported at once (``on_exit``), its log noting the node it ran
on. A stop of the sweep stops the job: points that had not ended end STOPPED. A
point ``stopped(request)`` says is stopped is skipped if the job has not started
yet, and once it has, its result is dropped and it ends STOPPED (its task runs
on: the job cannot be told to skip one point). A plan no node can take fails the
points once ``--ray-schedule-wait`` has passed with none of them started (an
autoscaler sees the points' tasks waiting meanwhile). A sweep's job is not
adopted by a restarted server: it is stopped then, and its points fail.
"""
from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any, Optional

from .executor import Exit, PointsCall, RunFailed, RunRequest
from .logs import LogSink
from .process import STOPPED
from .ray_jobs import JobLog, Outcome, build_error, watch_job
from .ray_records import JobRecord
from . import ray_stage

if TYPE_CHECKING:
    from .ray_executor import RayExecutor


class Sweep(PointsCall):
    """One ``run_points`` call on the cluster."""

    def __init__(self, executor: "RayExecutor", *call: Any) -> None:
        super().__init__(*call)
        self.executor = executor
        self._sinks: dict[int, LogSink] = {}
        self._done: set[int] = set()
        self._lock = threading.Lock()
        self.todo: list[RunRequest] = []
        self.joblog: Optional[JobLog] = None
        self.ticket = ""
        self.submission_id = ""

    def run(self) -> None:
        for request in self.requests:
            if self.stop.is_set() or self.stopped(request):
                self._finish(request, Exit(None, STOPPED))
            else:
                self.todo.append(request)
        if not self.todo:
            return
        try:
            record = self._submit()
        except RunFailed as exc:
            for request in self.todo:
                self._finish(request, Exit(None, STOPPED if self.stop.is_set() else str(exc)))
            return
        joblog, outcome = self.joblog, Outcome(None)
        assert joblog is not None
        try:
            outcome = watch_job(self.executor.cluster, record.submission_id, joblog, self.stop,
                                detached=self.executor._detached, schedule_wait=self.executor.schedule_wait,
                                resources=ray_stage.resources(self.todo[0].limits), on_running=lambda at: None,
                                note=self._note, waiting=lambda state: not self._done)
            if outcome.detached:  # a sweep does not outlive the server
                self.executor.cluster.stop(record.submission_id)
        except RunFailed as exc:
            outcome = Outcome(None, lost=str(exc))
        finally:
            self.executor.records.remove(record.run_id, record.submission_id)
            if self.ticket:
                self.executor.desk.revoke(self.ticket)
        reason = self._unfinished_reason(outcome, joblog)
        for index, request in enumerate(self.todo):
            if index not in self._done:
                self._finish(request, Exit(None, reason), index)

    # -- the job ----------------------------------------------------------------

    def _submit(self) -> JobRecord:
        executor, first = self.executor, self.todo[0]
        staged = ray_stage.stage(first, executor.info(), executor.packages)
        cpus, memory = ray_stage.resources(first.limits)
        marker = ray_stage.new_marker()
        sweep_id = f"sweep-{uuid.uuid4().hex[:12]}"
        record = JobRecord(sweep_id, f"blankly-{sweep_id}", marker, "sweep", "",
                           [r.env.get("BACKTESTING_ID", r.run_id) for r in self.todo])
        self.submission_id = record.submission_id
        config = ray_stage.run_config(staged, first.limits, first.deadline, marker, mode="points", cpu=cpus,
                                      memory=memory, parallel=self.parallel)
        points = [{"run_id": r.run_id, "env": r.env} for r in self.todo]
        extra, self.ticket = executor._ticket(first)
        extra["points.json"] = json.dumps(points).encode()
        metadata = {**ray_stage.metadata(first, executor.server_id, kind="sweep"), "runId": sweep_id,
                    "points": str(len(points))}
        self.joblog = JobLog(marker, None, self._frame, self.stop.wake)
        package = ray_stage.job_package(staged, executor.packages.parent / "sweeps", extra)
        if staged.pip is not None:
            self._note("the Ray cluster's environment does not meet the model's requirements: each node builds "
                       "one with pip before its first point")
        executor._send(record, staged, package, config, metadata, first, self._sink(0))
        return record

    # -- frames -------------------------------------------------------------------

    def _frame(self, frame: dict[str, Any]) -> None:
        kind, index = frame.get("t"), frame.get("i")
        if kind == "start" and isinstance(index, int) and 0 <= index < len(self.todo):
            request = self.todo[index]
            self._sink(index).note(f"point {index + 1} of {len(self.todo)}: a task of Ray job {self.submission_id}")
            self.on_start(request, None, float(frame.get("at") or time.time()))
        elif kind == "end" and index == -1:  # the driver could not start any point
            for i, request in enumerate(self.todo):
                if i not in self._done:
                    self._finish(request, Exit(None, str(frame.get("error"))), i)
        elif kind == "end" and isinstance(index, int) and 0 <= index < len(self.todo):
            self._point_ended(index, frame)

    def _point_ended(self, index: int, frame: dict[str, Any]) -> None:
        from .ray_executor import limit_reason

        request, joblog = self.todo[index], self.joblog
        assert joblog is not None
        sink = self._sink(index)
        log = joblog.take(index, "log")
        if log:
            sink.write(log)
        if frame.get("node"):
            sink.note(f"ran on Ray node {str(frame['node'])[:16]}")
        reports = {kind[len("report:"):]: joblog.take(index, kind) or b""
                   for kind in joblog.kinds(index) if kind.startswith("report:")}
        started, ended = frame.get("started") or time.time(), frame.get("ended") or time.time()
        if self.stop.is_set() or self.stopped(request):
            end = Exit(frame.get("code"), STOPPED, {}, started, ended)
        elif frame.get("error"):
            end = Exit(None, str(frame["error"]), reports, started, ended)
        else:
            end = Exit(frame.get("code"), limit_reason(frame.get("limit"), request), reports, started, ended)
        self._finish(request, end, index)

    # -- reporting ------------------------------------------------------------------

    def _sink(self, index: int) -> LogSink:
        with self._lock:
            if index not in self._sinks:
                self._sinks[index] = self.log_for(self.todo[index])
            return self._sinks[index]

    def _note(self, text: str) -> None:
        self._sink(0).note(text)

    def _finish(self, request: RunRequest, end: Exit, index: Optional[int] = None) -> None:
        if index is not None:
            with self._lock:
                if index in self._done:
                    return
                self._done.add(index)
        if end.reason and end.reason != STOPPED and index is not None:
            self._sink(index).note(end.reason)
        try:
            self.on_exit(request, end)
        except Exception:  # the bookkeeping's bug must not leave the other points unreported
            traceback.print_exc()

    def _unfinished_reason(self, outcome: Outcome, joblog: JobLog) -> str:
        if self.stop.is_set() or outcome.stopped or outcome.detached:
            return STOPPED
        if outcome.lost:
            return outcome.lost
        state = outcome.state
        if state is None:
            return "the sweep's Ray job is gone from the cluster"
        problem = build_error(state)
        if problem:
            return problem
        gist = joblog.stray.strip().splitlines()[-1] if joblog.stray.strip() else state.message.strip()[:300]
        return f"the sweep's Ray job ended ({state.status.lower()}) before this point did: {gist}"
