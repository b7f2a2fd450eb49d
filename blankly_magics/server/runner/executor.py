"""The line between run bookkeeping and where a run's process starts: the ``Executor`` interface.

The bookkeeping (service.py, backtests.py, live.py, screeners.py) owns the
backtest queue, statuses, restarts and results, and reports them through the
app's callbacks. An executor owns everything about *where* and *how* a run's
process runs. A run goes through it as:

    prepared = executor.prepare(request, log, stop)   # unpack, choose/build the environment
    exit = executor.run(prepared, log, stop, on_start) # one process, start to end (a live model's
    ...                                                # restarts and each screener tick call it again)
    executor.release(prepared)                         # the run's files go (secrets first)

``run`` blocks the calling thread until the process ends, enforces the
request's limits on the way, streams the output into ``log`` and hands back
what the ``blankly_external`` hook wrote (``Exit.reports``: file name ->
bytes). ``stop`` (a process.RunStop) ends a prepare or a run early; ``run``
then answers ``Exit.reason == STOPPED``.

Two implementations: ``LocalExecutor`` (local.py), a bubblewrap sandbox on this
machine, per run a folder mounted at fixed paths (sandbox.SANDBOX_VIEW); and
``RayExecutor`` (ray_executor.py), each run a job of a Ray cluster. The interface
is shaped for these:

- Warm starts. A pool of pre-started sandboxed workers (Blankly, numpy and
  pandas already imported), each handed one run's folder when assigned and
  exiting after it. ``LocalExecutor.run`` is the one place a run's process
  starts, and a start is fully described by a ``sandbox.SandboxSpec``: the run
  folder's mounts at fixed paths, the environment variables, the interpreter,
  the main script. A pre-started sandbox holds all of it but the folder's
  contents and the variables, which a worker can be given when assigned.
- Other machines (``RayExecutor``). Nothing in a ``RunRequest`` assumes the
  server's disk is where the run happens: it carries the version's zip (a path
  the server reads, so its bytes can be shipped), the Python version (the
  requirements are inside the zip), the platform's variables, the limits and
  the network flag. Results never come back through a shared filesystem: the
  output is streamed into the server's ``LogSink`` and the report files come
  back in ``Exit.reports``; statuses flow through the same bookkeeping callbacks.
- Secrets. ``RunRequest.secret_files`` (e.g. ``{"keys.json": b"..."}``) are
  written, mode 0600 and owned by the run, into the run's working directory
  just before each process starts, and removed when it ends and again when
  the run is released. Only that run's sandbox can see them; their contents
  are never logged, and their names only by count.

Sweeps submit many backtests of one version: a request is a small frozen value
and ``prepare`` of an already built environment is an unzip, so one request per
backtest stays cheap.

Runs that outlive the server. Where runs happen elsewhere (``RayExecutor``,
ray_executor.py: each run a job of a Ray cluster), stopping the server does not
stop them, and the next server takes them back:

- ``detaches`` is True. At shutdown the runner calls ``detach()`` before it stops
  its bookkeeping: from then on every ``run`` returns ``Exit(None, STOPPED)`` at
  once and leaves its process running, and the bookkeeping reports nothing more
  for those runs (the store keeps saying they run).
- ``start()`` answers, besides the leftovers it ended (records without a
  ``"handle"``), one record per run a previous server started that still exists
  where it runs: ``{"kind": "backtest"|"live", "id": ..., "handle": ...}``. The
  bookkeeping adopts one by preparing the run again with ``RunRequest.adopt =
  handle``: the first ``run`` of that request watches the process named by the
  handle (its status, its log from the start, its reports, its stop) instead of
  starting one; later runs (a live model's restarts) start processes as usual.
  A record the bookkeeping does not adopt (its model was stopped or deleted
  meanwhile) is ended with ``discard(handle)``.

``LocalExecutor`` does not detach: its runs die with the server (a sandbox dies
with its parent), its ``start()`` answers leftovers only, and ``adopt`` is never set.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .logs import LogSink
from .process import STOPPED, RunStop

__all__ = ["RunLimits", "RunRequest", "Prepared", "Exit", "Executor", "RunFailed", "STOPPED", "PointStart", "PointExit", "PointsCall"]


class RunFailed(Exception):
    """A run could not start or was stopped; the message is the user-facing reason."""


@dataclass(frozen=True)
class RunLimits:
    """A plan's limits, enforced per run (every process of it, and its environment's build)."""

    cpu: int = 1000  # millicores (a priority hint: runs are niced, CPU is bounded by the worker count)
    ram: int = 2048  # MB of resident memory across the run's processes
    timeout: float = 900.0  # seconds of wall clock per process where the request has a deadline
    disk: int = 1024  # MB the run may write (its folder), also the largest single file
    processes: int = 64  # processes the run may have at once


@dataclass(frozen=True)
class RunRequest:
    """Everything an executor needs to run one run, wherever it runs."""

    run_id: str  # unique among running runs: "backtest-<id>", "live-<model id>"
    kind: str  # "backtest", "live" or "screener"
    folder: Path  # the server's folder for this run: its log lives there (folders.RunFolder)
    zip_path: Path  # the version's zip (read by the server; its bytes can travel)
    version_id: str
    python_version: str  # "X.Y", or "" for the server's own
    env: dict[str, str]  # the platform's variables: PROJECT_ID, MODEL_ID, VERSION_ID, UID, TYPE, BACKTESTING...
    limits: RunLimits = field(default_factory=RunLimits)
    deadline: bool = False  # limits.timeout applies to each process (a backtest, a screener tick)
    network: bool = True  # False: loopback only
    secret_files: dict[str, bytes] = field(default_factory=dict, repr=False)  # name -> contents, never logged
    adopt: str = ""  # a handle from Executor.start(): the first run() watches that process instead of starting one


@dataclass
class Prepared:
    """A run ready to start: what the bookkeeping may read of it. Executors subclass it."""

    request: RunRequest
    manifest: dict[str, Any]  # the version's blankly.json
    python_version: str  # the X.Y the run got


@dataclass(frozen=True)
class Exit:
    """How one process of a run ended."""

    code: Optional[int]  # exit code (negative: killed by that signal); None if it never started
    reason: Optional[str]  # STOPPED (the stop event), a limit's "stopped: exceeded ..." text, or None
    reports: dict[str, bytes] = field(default_factory=dict, repr=False)  # the hook's report files
    started: float = 0.0
    ended: float = 0.0


# on_start(pid, started): the process is up (pid as this server can see it, or None elsewhere)
OnStart = Callable[[Optional[int], float], None]
# run_points' callbacks: a point's process is up (request, pid, started); a point ended (request, exit)
PointStart = Callable[[RunRequest, Optional[int], float], None]
PointExit = Callable[[RunRequest, Exit], None]


class PointsCall:
    """What one ``run_points`` call was given: the base of an executor's class that runs it."""

    def __init__(self, requests: Sequence[RunRequest], log_for: Callable[[RunRequest], LogSink], stop: RunStop,
                 on_start: PointStart, on_exit: PointExit, parallel: int,
                 stopped: Callable[[RunRequest], bool]) -> None:
        self.requests = list(requests)
        self.log_for = log_for
        self.stop = stop
        self.on_start = on_start
        self.on_exit = on_exit
        self.parallel = max(1, parallel)
        self.stopped = stopped


class Executor(ABC):
    """Where runs' processes start. Thread-safe: every run calls it from its own thread."""

    isolation: str = "none"  # "bubblewrap" when runs are confined
    detaches: bool = False  # runs outlive the server: see "Runs that outlive the server" above

    def start(self) -> list[dict[str, Any]]:
        """Get ready; kill what a previous server left running and return its records
        (``{"kind": "backtest"|"live", "id": ...}``) so the bookkeeping can close them.
        An executor that ``detaches`` also returns the runs it can hand back, each with a
        ``"handle"`` to adopt (``RunRequest.adopt``) or ``discard``."""
        return []

    def detach(self) -> None:
        """The server is stopping and leaves its runs running: every ``run`` returns STOPPED
        at once without stopping its process (only called when ``detaches``)."""

    def discard(self, handle: str) -> None:
        """End a run a previous server started that the bookkeeping does not adopt."""

    @abstractmethod
    def python_versions(self) -> list[str]:
        """The X.Y versions runs can use."""

    @abstractmethod
    def prepare(self, request: RunRequest, log: LogSink, stop: RunStop) -> Prepared:
        """Unpack the version and choose (maybe build) its environment; RunFailed with the reason."""

    @abstractmethod
    def run(self, prepared: Prepared, log: LogSink, stop: RunStop, on_start: OnStart) -> Exit:
        """Start one process of the run and wait for its end, enforcing the limits."""

    @abstractmethod
    def release(self, prepared: Prepared, *, keep_report: bool = True) -> None:
        """The run is over: remove its files (its report folder too unless kept)."""

    def run_points(
        self,
        requests: Sequence[RunRequest],
        log_for: Callable[[RunRequest], LogSink],
        stop: RunStop,
        on_start: PointStart,
        on_exit: PointExit,
        *,
        parallel: int = 1,
        stopped: Callable[[RunRequest], bool] = lambda request: False,
    ) -> None:
        """Run many backtests of ONE version for ONE user (one trust domain: a sweep's points),
        at most ``parallel`` at once, and return when every one has ended.

        Each request is a whole backtest request (its own ``run_id`` and folder; its own env:
        ``BACKTESTING_ID``, ``BACKTESTING_ARGS``, ``BLANKLY_PARAMETERS``), all with the same
        ``zip_path``, ``python_version``, limits and network. ``on_exit`` is called once per
        request, in the order they end: with the run's ``Exit`` (reports included), or, for a
        point that could not start, ``Exit(None, reason)``. ``stop`` ends them all (each ends
        ``STOPPED``); ``stopped(request)`` true before a point starts skips it (``STOPPED``).
        Each point is released (its files removed, the report kept) before ``on_exit``.

        This default runs every point as its own prepare/run/release. An executor may do
        better for one trust domain: prepare the environment once and fork a worker that has
        already imported the heavy modules per point, or fan the points out as a cluster's tasks."""
        import concurrent.futures

        def one(request: RunRequest) -> None:
            if stop.is_set() or stopped(request):
                on_exit(request, Exit(None, STOPPED))
                return
            log = log_for(request)
            try:
                prepared = self.prepare(request, log, stop)
            except RunFailed as exc:
                on_exit(request, Exit(None, STOPPED if stop.is_set() else str(exc)))
                return
            try:
                ended = self.run(prepared, log, stop, lambda pid, started: on_start(request, pid, started))
            except RunFailed as exc:
                ended = Exit(None, STOPPED if stop.is_set() else str(exc))
            finally:
                self.release(prepared)
            on_exit(request, ended)

        with concurrent.futures.ThreadPoolExecutor(max(1, parallel), thread_name_prefix="point") as pool:
            for future in [pool.submit(one, request) for request in requests]:
                future.result()

    def close(self) -> None:
        """The server is stopping (runs were stopped first)."""
