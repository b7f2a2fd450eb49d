"""Live models: one supervisor thread per deployed model, restarting a crashed strategy with backoff.

States go out through ``on_live(model_id, fields)``; fields is a dict with any of
state ("starting"|"building"|"running"|"stopped"|"crashed"; "building" while its Python
environment is built, its step in ``LiveModels.progress``), version_id, pid, since (epoch float),
exit_code, restarts (int), error (str|None), log_tail (str). A deploy replaces the
model's running process (stop, then start); the replaced run never reports again.
Screeners are supervised here too, on their schedule (screeners.py).
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from .backtests import SecretFiles, limits_text
from .building import BUILD_LOG, BuildLog
from .executor import Executor, Prepared, RunFailed, RunLimits, RunRequest
from .folders import LOG_NAME, RunFolder, check_id
from .logs import LogSink, failure_reason, read_tail, with_network_hint
from .prepare import platform_vars
from .process import STOPPED, RunStop

LiveCallback = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class LiveJob:
    model_id: str
    version_id: str
    project_id: str
    zip_path: Path
    python_version: str
    model_type: str = "strategy"
    schedule: Optional[str] = None  # cron text for screeners
    limits: RunLimits = field(default_factory=RunLimits)
    user_id: str = ""
    secrets: SecretFiles = field(default=dict, repr=False, compare=False)
    adopt: str = ""  # the executor's handle of the model's job a previous server left running


@dataclass
class Live:
    job: LiveJob
    thread: Optional[threading.Thread] = None
    stop: RunStop = field(default_factory=RunStop)
    replaced: bool = False
    status: dict[str, Any] = field(default_factory=dict)


class LiveModels:
    """Every deployed model's supervisor."""

    def __init__(self, runs_dir: Path, executor: Executor, on_live: LiveCallback, *, max_restarts: int,
                 restart_backoff: float, grace: float, log_max_bytes: int, stable_after: float,
                 network: bool) -> None:
        self.folder = Path(runs_dir) / "live"
        self.executor = executor
        self.on_live = on_live
        self.max_restarts = max_restarts
        self.restart_backoff = restart_backoff
        self.grace = grace
        self.log_max_bytes = log_max_bytes
        self.stable_after = stable_after  # a live run this long resets the restart count
        self.network = network
        self._lock = threading.Lock()
        # Serialises reports so a replaced run can never report after its successor.
        self._report_lock = threading.RLock()
        self._live: dict[str, Live] = {}

    def deploy(self, job: LiveJob) -> None:
        check_id("model id", job.model_id)
        live = Live(job)
        with self._report_lock:
            with self._lock:
                old = self._live.get(job.model_id)
                if old is not None:
                    old.replaced = True
                    old.stop.set()
                self._live[job.model_id] = live
            self.report(live, {"state": "starting", "version_id": job.version_id, "pid": None,
                               "since": time.time(), "exit_code": None, "restarts": 0, "error": None})
        live.thread = threading.Thread(target=self._supervise, args=(live, old), name=f"live-{job.model_id}",
                                       daemon=True)
        live.thread.start()

    def kill(self, model_id: str) -> bool:
        with self._lock:
            live = self._live.get(model_id)
        if live is None or live.thread is None or not live.thread.is_alive():
            return False
        live.stop.set()
        live.thread.join(self.grace + 10)
        return True

    def detach_all(self) -> None:
        """The server stops and leaves the models running (an executor that ``detaches``):
        each supervisor ends without a report, its process left as it is."""
        with self._report_lock:
            with self._lock:
                lives = list(self._live.values())
            for live in lives:
                live.replaced = True  # silent from now on, as a replaced run is
                live.stop.set()
        for live in lives:
            if live.thread is not None:
                live.thread.join(self.grace + 10)

    def stop_all(self) -> None:
        with self._lock:
            lives = list(self._live.values())
        for live in lives:
            live.stop.set()
        for live in lives:
            if live.thread is not None:
                live.thread.join(self.grace + 10)

    def log_path(self, model_id: str) -> Path:
        return self.folder / check_id("model id", model_id) / LOG_NAME

    def progress(self, model_id: str) -> Optional[str]:
        """What the build of the model's environment is doing (None when none is being built)."""
        with self._lock:
            live = self._live.get(model_id)
            return live.status.get("progress") if live is not None else None

    def _building(self, live: Live, step: str) -> None:
        with self._lock:
            first = "progress" not in live.status
            live.status["progress"] = step
        if first:
            self.report(live, {"state": "building", "since": time.time()})

    def status(self, model_id: str) -> Optional[dict[str, Any]]:
        with self._lock:
            live = self._live.get(model_id)
            if live is None:
                return None
            status = dict(live.status)
        status["log_tail"] = read_tail(self.log_path(model_id))
        return status

    # -- reports -------------------------------------------------------------------

    def call_on_live(self, model_id: str, fields: dict[str, Any]) -> None:
        try:
            self.on_live(model_id, fields)
        except Exception:  # the app's bug must not kill a supervisor or leave a process behind
            traceback.print_exc()

    def report(self, live: Live, fields: dict[str, Any]) -> None:
        """Report for one run of a model; a run that was replaced by a new deploy stays silent."""
        with self._report_lock:
            if live.replaced:
                return
            with self._lock:
                live.status.update(fields)
            self.call_on_live(live.job.model_id, fields)

    def end(self, live: Live, fields: dict[str, Any]) -> None:
        fields.setdefault("since", time.time())
        fields.setdefault("pid", None)
        self.report(live, fields)

    # -- supervision -----------------------------------------------------------------

    def _request(self, job: LiveJob, folder: RunFolder) -> RunRequest:
        env = platform_vars(project_id=job.project_id, model_id=job.model_id, version_id=job.version_id,
                            user_id=job.user_id, model_type=job.model_type)
        screener = job.model_type == "screener"
        return RunRequest(run_id=f"live-{job.model_id}", kind="screener" if screener else "live",
                          folder=folder.root, zip_path=job.zip_path, version_id=job.version_id,
                          python_version=job.python_version, env=env, limits=job.limits, deadline=screener,
                          network=self.network, adopt=job.adopt)

    def _supervise(self, live: Live, old: Optional[Live]) -> None:
        from .screeners import supervise_screener

        job = live.job
        if old is not None and old.thread is not None:
            old.thread.join()  # the previous run of this model is gone before this one starts
        if live.stop.is_set():
            self.end(live, {"state": "stopped", "error": None})
            return
        folder = RunFolder(self.folder / job.model_id).reset()
        log = LogSink(folder.log, self.log_max_bytes)
        prepared: Optional[Prepared] = None
        build = BuildLog(folder.root / BUILD_LOG, log, lambda step: self._building(live, step))
        try:
            try:
                prepared = self.executor.prepare(self._request(job, folder), build, live.stop)
            finally:
                build.done()
            with self._lock:
                built = live.status.pop("progress", None) is not None
            if built:
                log.note(f"built the environment in {build.seconds:.0f} s")
            log.note(f"model {job.model_id}: python {prepared.python_version}, "
                     f"{limits_text(job.limits, job.model_type == 'screener')}{'' if self.network else ', no network'}")
            if job.model_type == "screener":
                supervise_screener(self, live, prepared, log)
            else:
                self._supervise_strategy(live, prepared, log)
        except RunFailed as exc:
            if live.stop.is_set():  # killed while its environment was being built
                log.note("stopped")
                self.end(live, {"state": "stopped", "error": None})
                return
            if prepared is None and build.started is not None:
                build.show()  # a failed build's output is the model's log's to show
            log.note(str(exc))
            self.end(live, {"state": "crashed", "error": str(exc), "log_tail": log.tail()})
        except Exception:
            traceback.print_exc()
            message = "internal error in the runner: " + traceback.format_exc().strip().splitlines()[-1]
            log.note(message)
            self.end(live, {"state": "crashed", "error": message, "log_tail": log.tail()})
        finally:
            if prepared is not None:
                self.executor.release(prepared)

    def run_once(self, live: Live, prepared: Prepared, log: LogSink, running: dict[str, Any]) -> Any:
        """One process of the model; ``running`` is reported (with its pid) once it is up. Its secret
        files are asked for afresh: a restart or a screener's next tick sees the keys stored now."""
        prepared.request = replace(prepared.request, secret_files=live.job.secrets())

        def started(pid: Optional[int], at: float) -> None:
            self.report(live, {**running, "pid": pid, "since": at} if running.get("state") else {"pid": pid})

        return self.executor.run(prepared, log, live.stop, started)

    def _supervise_strategy(self, live: Live, prepared: Prepared, log: LogSink) -> None:
        restarts = 0
        while True:
            end = self.run_once(live, prepared, log, {"state": "running", "restarts": restarts, "exit_code": None,
                                                      "version_id": live.job.version_id})
            if end.reason == STOPPED:  # asked for: its signal's exit code says nothing to the user
                log.note("stopped")
                self.end(live, {"state": "stopped", "exit_code": None, "error": None})
                return
            if end.reason is None and end.code == 0:
                log.note("the script ended by itself (exit code 0)")
                self.end(live, {"state": "stopped", "exit_code": 0,
                                "error": "the script ended by itself (exit code 0)"})
                return
            error = end.reason or with_network_hint(failure_reason(log.tail(16000), end.code), self.network)
            if end.ended - end.started >= self.stable_after:
                restarts = 0
            if restarts >= self.max_restarts:
                log.note(f"crashed: {error}; gave up after {restarts} restarts")
                self.end(live, {"state": "crashed", "exit_code": end.code, "restarts": restarts,
                                "error": f"{error} (gave up after {restarts} restarts)", "log_tail": log.tail()})
                return
            delay = min(self.restart_backoff * (2 ** restarts), 60.0)
            restarts += 1
            log.note(f"crashed: {error}; restart {restarts} of {self.max_restarts} in {delay:g} s")
            self.report(live, {"state": "starting", "pid": None, "exit_code": end.code, "restarts": restarts,
                               "error": error, "log_tail": log.tail(), "since": time.time()})
            if live.stop.wait(delay):
                self.end(live, {"state": "stopped", "error": None})
                return
