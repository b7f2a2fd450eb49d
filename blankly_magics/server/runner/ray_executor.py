"""``RayExecutor``: every run a job of a Ray cluster, the server keeping the books.

``python -m blankly_magics.server --executor ray --ray-address URL`` hands runs to
the cluster whose job API (the dashboard) answers at URL. Per run:

- ``prepare``: the version becomes a package (ray_stage.py: built once per
  version, sent once per cluster); its requirements go to the runtime env's pip
  only when the cluster's own environment, probed at start, does not meet them;
  the model's Python must be the cluster's.
- ``run``: one Ray job (a backtest, each start of a live model, each screener
  tick), its metadata naming the ids, sized by the plan (``entrypoint_num_cpus``
  from ``cpu``, ``entrypoint_memory`` from ``ram``). On the node it lands on, the
  driver (ray_job/driver.py) runs the model in a private folder and enforces the
  plan; its output is followed into the run's log, its reports come back as
  frames of the job's log (ray_jobs.py). A stop (cancel, ``/model/kill``, the
  plan's time limit) stops the job. A live model's restarts stay live.py's: each
  is a new job.
- ``run_points``: ONE job for a sweep, whose driver fans the points out as Ray
  tasks (``SPREAD`` over the nodes, at most ``parallel`` at once), so a point
  costs a task, not a job; each point's output and reports come back as it ends.
- Secret files never travel with a job: a one-use ticket does (ray_secrets.py).
- The server's restart leaves the jobs running (``detaches``): their records
  (ray_records.py) let the next server adopt them (executor.py).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .executor import Executor, Exit, OnStart, PointExit, PointStart, Prepared, RunFailed, RunRequest
from .logs import LogSink
from .process import STOPPED, RunStop, disk_reason, memory_reason, process_reason, time_reason
from .ray_cluster import ClusterInfo, RayCluster
from .ray_jobs import JobLog, Outcome, build_error, watch_job
from .ray_records import JobRecord, JobRecords
from .ray_secrets import TicketDesk
from . import ray_stage
from .ray_stage import Staged

PROBE_LOCK = threading.Lock()


@dataclass
class RayPrepared(Prepared):
    staged: Staged = None  # type: ignore[assignment]
    adopt: str = ""  # a previous server's job, watched by the first run()


class RayExecutor(Executor):
    """Runs as jobs of the Ray cluster at ``address`` (its dashboard's URL)."""

    isolation = "none"  # Ray does not confine one job from another (docs/server/security.md)
    detaches = True

    def __init__(self, data_dir: Path, address: str, *, grace: float = 5.0, schedule_wait: float = 60.0,
                 secrets_listen: str = "127.0.0.1:0", secrets_url: str = "",
                 cluster: Optional[RayCluster] = None) -> None:
        self.data_dir = Path(data_dir)
        self.cluster = cluster or RayCluster(address)
        self.grace = grace
        self.schedule_wait = schedule_wait
        self.records = JobRecords(self.data_dir / "runs" / "ray")
        self.packages = self.data_dir / "runs" / "ray" / "packages"
        self.desk = TicketDesk(secrets_listen, secrets_url)
        self.server_id = self.records.server_id()
        self._detached = threading.Event()
        self._info: Optional[ClusterInfo] = None

    # -- lifecycle ------------------------------------------------------------

    def info(self) -> ClusterInfo:
        """The cluster's Python and packages (a probe job, the first time)."""
        with PROBE_LOCK:
            if self._info is None:
                self._info = self.cluster.probe()
            return self._info

    def start(self) -> list[dict[str, Any]]:
        self._detached.clear()
        self.info()
        out: list[dict[str, Any]] = []
        known = set()
        for record in self.records.all():
            known.add(record.submission_id)
            state = self.cluster.state(record.submission_id)
            if record.kind in ("sweep", "screener"):  # not adopted: a sweep's points fail, a screener ticks anew
                self.cluster.stop(record.submission_id)
                self.records.remove(record.run_id, record.submission_id)
                out += [{"kind": "backtest", "id": point} for point in record.points]
            elif state is None:
                self.records.remove(record.run_id, record.submission_id)
                out.append({"kind": record.kind, "id": record.id})
            else:
                out.append({"kind": record.kind, "id": record.id, "handle": record.submission_id})
        for submission_id, state in self.cluster.jobs():  # started by this data dir's server, then forgotten
            if state.metadata.get("blankly_magics") == self.server_id and not state.terminal \
                    and submission_id not in known:
                self.cluster.stop(submission_id)
        return out

    def discard(self, handle: str) -> None:
        record = self.records.by_submission(handle)
        self.cluster.stop(handle)
        if record is not None:
            self.records.remove(record.run_id, handle)

    def detach(self) -> None:
        self._detached.set()

    def close(self) -> None:
        self.desk.close()

    def python_versions(self) -> list[str]:
        return [self.info().python]

    def cpus(self) -> int:
        """The cluster's CPUs now (the default number of backtests run at once)."""
        return self.cluster.cpus()

    # -- one run --------------------------------------------------------------

    def prepare(self, request: RunRequest, log: LogSink, stop: RunStop) -> RayPrepared:
        if stop.is_set():
            raise RunFailed("stopped")
        info = self.info()
        staged = ray_stage.stage(request, info, self.packages)
        if staged.pip is not None:
            log.note(f"the Ray cluster's environment does not meet the model's requirements: each node builds "
                     f"one with pip ({len(staged.pip)} line{'s' if len(staged.pip) != 1 else ''}) before its "
                     "first run")
        return RayPrepared(request, staged.manifest, info.python, staged=staged, adopt=request.adopt)

    def run(self, prepared: Prepared, log: LogSink, stop: RunStop, on_start: OnStart) -> Exit:
        assert isinstance(prepared, RayPrepared)
        request = prepared.request
        if stop.is_set() or self._detached.is_set():
            return Exit(None, STOPPED)
        record = self.records.by_submission(prepared.adopt) if prepared.adopt else None
        prepared.adopt = ""
        if record is not None:
            log.note(f"the server restarted: watching Ray job {record.submission_id} again")
            ticket = ""
        else:
            record, ticket = self._submit(prepared, log)
        end: dict[str, Any] = {}
        joblog = JobLog(record.marker, log, lambda frame: end.update(frame) if frame.get("t") == "end" else None,
                        stop.wake)
        outcome = Outcome(None)
        try:
            outcome = watch_job(self.cluster, record.submission_id, joblog, stop, detached=self._detached,
                                schedule_wait=self.schedule_wait, resources=ray_stage.resources(request.limits),
                                on_running=lambda at: on_start(None, at), note=log.note,
                                deadline=request.limits.timeout + 30 if request.deadline else None)
        finally:
            if ticket:
                self.desk.revoke(ticket)
            if not outcome.detached:
                self.records.remove(request.run_id, record.submission_id)
        return self._exit(outcome, end, joblog, request)

    def _submit(self, prepared: RayPrepared, log: LogSink) -> tuple[JobRecord, str]:
        request, staged = prepared.request, prepared.staged
        marker = ray_stage.new_marker()
        record = JobRecord(request.run_id, ray_stage.submission_id(request), marker, request.kind,
                           request.run_id.split("-", 1)[1])
        config = ray_stage.run_config(staged, request.limits, request.deadline, marker, env=request.env)
        extra, ticket = self._ticket(request)
        self._send(record, staged, ray_stage.job_package(staged, Path(request.folder), extra), config,
                   ray_stage.metadata(request, self.server_id), request, log)
        return record, ticket

    def _ticket(self, request: RunRequest) -> tuple[dict[str, bytes], str]:
        """The per-job files for the run's secret files: a ticket to fetch them (never the files)."""
        if not request.secret_files:
            return {}, ""
        ticket = self.desk.issue(request.secret_files)
        return {"ticket.json": json.dumps(ticket).encode()}, ticket["ticket"]

    def _send(self, record: JobRecord, staged: Staged, package: Path, config: dict[str, Any],
              metadata: dict[str, str], request: RunRequest, log: LogSink) -> None:
        cpus, memory = ray_stage.resources(request.limits)
        self.records.write(record)
        log.note(f"submitting Ray job {record.submission_id} to {self.cluster.address} "
                 f"({cpus:g} CPU, {memory >> 20} MB)")
        try:
            self.cluster.submit(entrypoint=ray_stage.ENTRYPOINT, runtime_env=ray_stage.runtime_env(staged, package,
                                config), metadata=metadata, submission_id=record.submission_id,
                                num_cpus=cpus if record.kind != "sweep" else 0,
                                memory=memory if record.kind != "sweep" else 0)
        except BaseException:
            self.records.remove(record.run_id, record.submission_id)
            raise
        finally:
            if package != staged.package:
                package.unlink(missing_ok=True)

    def _exit(self, outcome: Outcome, end: dict[str, Any], joblog: JobLog, request: RunRequest) -> Exit:
        reports = {kind[len("report:"):]: joblog.take(0, kind) or b"" for kind in joblog.kinds(0)
                   if kind.startswith("report:")}
        started = end.get("started") or outcome.running_at or time.time()
        ended = end.get("ended") or time.time()
        state = outcome.state
        if outcome.detached:
            return Exit(None, STOPPED, {}, started, ended)
        if outcome.stopped:
            return Exit(end.get("code", state.exit_code if state else None), STOPPED, reports, started, ended)
        if outcome.timed_out:
            return Exit(None, time_reason(request.limits.timeout), reports, started, ended)
        if outcome.lost:
            return Exit(None, outcome.lost, reports, started, ended)
        if state is None:
            return Exit(None, "the run's Ray job is gone from the cluster", reports, started, ended)
        problem = build_error(state)
        if problem:
            raise RunFailed(problem)
        if end.get("error"):
            return Exit(None, str(end["error"]), reports, started, ended)
        if "code" in end:
            return Exit(end["code"], limit_reason(end.get("limit"), request), reports, started, ended)
        if state.status == "STOPPED":
            return Exit(state.exit_code, "the run's Ray job was stopped on the cluster, not by this server",
                        reports, started, ended)
        return Exit(state.exit_code, f"the run's Ray job failed: {_gist(state.message)}", reports, started, ended)

    def release(self, prepared: Prepared, *, keep_report: bool = True) -> None:
        """Nothing of a run stays on the server but its log (the package is the version's, kept)."""

    # -- a sweep's points: one job, a task each ------------------------------------

    def run_points(self, requests: Sequence[RunRequest], log_for: Callable[[RunRequest], LogSink], stop: RunStop,
                   on_start: PointStart, on_exit: PointExit, *, parallel: int = 1,
                   stopped: Callable[[RunRequest], bool] = lambda request: False) -> None:
        from .ray_points import Sweep

        Sweep(self, list(requests), log_for, stop, on_start, on_exit, parallel, stopped).run()


def limit_reason(limit: Optional[str], request: RunRequest) -> Optional[str]:
    """The text a limit the driver enforced is reported with (the local executor's words)."""
    limits = request.limits
    return {"time": time_reason(limits.timeout), "ram": memory_reason(limits.ram), "disk": disk_reason(limits.disk),
            "processes": process_reason(limits.processes)}.get(limit or "")


def _gist(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return (lines[0] if lines else "no reason given")[:500]
