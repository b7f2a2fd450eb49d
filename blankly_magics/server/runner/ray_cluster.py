"""One Ray cluster as the server sees it: its job API at the dashboard's address, nothing else.

Everything goes through ``ray.job_submission.JobSubmissionClient`` (HTTP to the
dashboard, the address ``--ray-address`` names) and the state API's node list:
the server never joins the cluster as a Ray driver and needs no shared disk.
``RayCluster`` wraps what the executor asks of it: is it there, what Python and
packages its nodes run (one short probe job, once), which nodes could take a
plan's resources, and per job: submit, status, stop, the log (followed as it is
written, then completed at the end).

Errors come back as ``RunFailed`` with a one-line reason, or ``ClusterUnreachable``
(a ``BlanklyError``) when the address answers nothing.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ...errors import BlanklyError
from .executor import RunFailed

CONNECT_ATTEMPTS = 3
SUBMIT_RETRY = 60.0  # seconds a fresh cluster may answer "no available agent" before a submit fails
NODES_TTL = 5.0  # seconds the node list is reused
PROBE_TIMEOUT = 300.0
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
PROBE = r"""
import json, os, platform, sys
from importlib import metadata
dists = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    if name:
        dists[name] = dist.version
markers = {
    "implementation_name": sys.implementation.name,
    "implementation_version": "%d.%d.%d" % sys.implementation.version[:3],
    "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(), "platform_python_implementation": platform.python_implementation(),
    "python_version": "%d.%d" % sys.version_info[:2], "sys_platform": sys.platform,
}
print("BLANKLY_MAGICS_PROBE " + json.dumps({"python": markers["python_version"], "dists": dists, "markers": markers}))
"""


class ClusterUnreachable(BlanklyError):
    """The Ray cluster's job API does not answer at the address given."""


@dataclass(frozen=True)
class ClusterInfo:
    """What the cluster's own environment is (measured by a probe job on the head)."""

    python: str  # X.Y
    distributions: dict[str, str]  # canonical project name -> version
    markers: dict[str, str]  # the PEP 508 environment markers of that Python


@dataclass(frozen=True)
class JobState:
    """A job's status as the cluster reports it."""

    status: str  # PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    message: str
    error_type: str
    exit_code: Optional[int]
    start_time: Optional[float]  # epoch seconds
    end_time: Optional[float]
    metadata: dict[str, str]

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def connect(address: str) -> Any:
    """A ``JobSubmissionClient`` for ``address``; ClusterUnreachable (one line) if it answers nothing."""
    from ray.job_submission import JobSubmissionClient

    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return JobSubmissionClient(address)
        except ConnectionError:  # nothing answers (yet: a head that is starting gets a moment)
            reason = "nothing answers there"
        except (RuntimeError, ValueError) as exc:
            reason = _first_line(exc)
        time.sleep(0.5)
    raise ClusterUnreachable(f"cannot reach the Ray cluster's job API at {address} ({reason}); start the "
                             "cluster (ray start --head) or give its dashboard's address with --ray-address")


def _state(details: Any) -> JobState:
    status = getattr(details.status, "value", str(details.status))
    error_type = getattr(details, "error_type", None)
    return JobState(
        status=status, message=details.message or "", error_type=getattr(error_type, "value", error_type) or "",
        exit_code=getattr(details, "driver_exit_code", None),
        start_time=details.start_time / 1000 if details.start_time else None,
        end_time=details.end_time / 1000 if details.end_time else None,
        metadata=dict(details.metadata or {}),
    )


class RayCluster:
    """The job API of one Ray cluster. Thread-safe: every run's thread calls it."""

    def __init__(self, address: str) -> None:
        self.address = address.rstrip("/")
        self.client = connect(self.address)
        self._nodes: tuple[float, list[dict[str, float]]] = (0.0, [])
        self._lock = threading.Lock()

    # -- the cluster ------------------------------------------------------------

    def probe(self) -> ClusterInfo:
        """The Python and the installed distributions of the cluster's own environment (one short job)."""
        from ...requirement_lines import canonical_name

        submission = self.submit(entrypoint=f"python -c {shlex.quote(PROBE)}", runtime_env={}, metadata={},
                                 submission_id=None, num_cpus=0, memory=0)
        deadline = time.monotonic() + PROBE_TIMEOUT
        while True:
            state = self.state(submission)
            if state is not None and state.terminal:
                break
            if time.monotonic() > deadline:
                self.stop(submission)
                raise RunFailed(f"the Ray cluster at {self.address} did not run a probe job within "
                                f"{PROBE_TIMEOUT:g} s")
            time.sleep(0.2)
        for line in reversed(self.logs(submission).splitlines()):
            if line.startswith("BLANKLY_MAGICS_PROBE "):
                data = json.loads(line.split(" ", 1)[1])
                dists = {canonical_name(name): version for name, version in data["dists"].items()}
                return ClusterInfo(data["python"], dists, data["markers"])
        raise RunFailed(f"a probe job on the Ray cluster at {self.address} failed: {state.message[-300:]}")

    def nodes(self) -> list[dict[str, float]]:
        """Each alive node's total resources (CPU, memory in bytes, ...), reused for a few seconds."""
        with self._lock:
            stamp, nodes = self._nodes
            if time.monotonic() - stamp < NODES_TTL:
                return nodes
        from ray.util.state import list_nodes

        try:
            found = [dict(n.resources_total) for n in list_nodes(address=self.address, detail=True)
                     if n.state == "ALIVE"]
        except Exception as exc:  # the state API is the dashboard's too: the same outage as a job's
            raise RunFailed(f"the Ray cluster at {self.address} did not list its nodes ({_first_line(exc)})") from None
        with self._lock:
            self._nodes = (time.monotonic(), found)
        return found

    def cpus(self) -> int:
        return int(sum(node.get("CPU", 0) for node in self.nodes()))

    def unschedulable(self, cpus: float, memory: int) -> Optional[str]:
        """Why no node of the cluster can take ``cpus`` and ``memory`` bytes, or None when one can."""
        nodes = self.nodes()
        if any(n.get("CPU", 0) >= cpus and n.get("memory", 0) >= memory for n in nodes):
            return None
        most_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
        most_memory = max((n.get("memory", 0) for n in nodes), default=0)
        return (f"no node of the Ray cluster has the plan's {cpus:g} CPUs and {memory >> 20} MB of memory "
                f"(its largest have {most_cpu:g} CPUs and {int(most_memory) >> 20} MB): choose a smaller plan "
                "or add a node that large to the cluster")

    # -- jobs -----------------------------------------------------------------------

    def submit(self, *, entrypoint: str, runtime_env: dict[str, Any], metadata: dict[str, str],
               submission_id: Optional[str], num_cpus: float, memory: int) -> str:
        """Submit a job; a fresh cluster's "no available agent" is waited out (SUBMIT_RETRY)."""
        deadline = time.monotonic() + SUBMIT_RETRY
        while True:
            try:
                return self.client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata,
                                              submission_id=submission_id, entrypoint_num_cpus=num_cpus or None,
                                              entrypoint_memory=memory or None)
            except Exception as exc:
                text = str(exc)
                if "No available agent" in text and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                if "Package size" in text or "exceeds the maximum size" in text:
                    raise RunFailed(f"the version is too large to send to the Ray cluster ({_first_line(exc)})") \
                        from None
                raise RunFailed(f"the Ray cluster at {self.address} refused the job ({_first_line(exc)})") from None

    def state(self, submission_id: str) -> Optional[JobState]:
        """The job's state; None when the cluster has no such job. Other errors raise (the caller retries)."""
        try:
            return _state(self.client.get_job_info(submission_id))
        except RuntimeError as exc:
            if "does not exist" in str(exc) or "status code 404" in str(exc):
                return None
            raise

    def stop(self, submission_id: str) -> None:
        try:
            self.client.stop_job(submission_id)
        except Exception:  # already ended, or gone: nothing left to stop
            pass

    def logs(self, submission_id: str) -> str:
        return self.client.get_job_logs(submission_id)

    def jobs(self) -> list[tuple[str, JobState]]:
        """(submission id, state) of every job the cluster remembers."""
        return [(d.submission_id, _state(d)) for d in self.client.list_jobs() if d.submission_id]

    def follow(self, submission_id: str, on_text: Callable[[str], None]) -> "Follower":
        """Feed the job's log to ``on_text`` as it is written, from its first byte, in a thread."""
        return Follower(self.client, submission_id, on_text)


class Follower:
    """A thread tailing one job's log (Ray's websocket); ``close()`` ends it at once."""

    def __init__(self, client: Any, submission_id: str, on_text: Callable[[str], None]) -> None:
        self.client = client
        self.submission_id = submission_id
        self.on_text = on_text
        self.failed: Optional[str] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional[asyncio.Task] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ray-log-{submission_id[-12:]}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        async def tail() -> None:
            async for text in self.client.tail_job_logs(self.submission_id):
                self.on_text(text)

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            self._ready.set()
            await tail()

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the log is completed from get_job_logs at the end all the same
            self.failed = _first_line(exc)
        finally:
            self._ready.set()

    def close(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and self._thread.is_alive():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop ended meanwhile
                pass
        self._thread.join(10)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
