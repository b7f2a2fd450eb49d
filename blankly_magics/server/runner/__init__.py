"""Running uploaded models, one idea a module:

- ``service``: ``Runner``, the bookkeeping every route talks to;
- ``backtests``, ``sweeps``, ``live``, ``screeners``: the queues, the supervisors, the schedules;
- ``executor``: the ``Executor`` interface between bookkeeping and where a process starts;
- ``local``: ``LocalExecutor``, this machine, each process in a bubblewrap sandbox;
- ``warm``, ``warm_pool``: warm starts, sandboxes that imported Blankly before their run is known,
  and the pool that keeps them (``worker/worker.py``: the program inside one);
- ``points``: a sweep's points run in lanes forked from one warm worker (``LocalExecutor.run_points``);
- ``ray_executor``: ``RayExecutor``, each run a job of a Ray cluster (``ray_cluster``: its job API;
  ``ray_stage``: a job's package and settings; ``ray_jobs``: watching one; ``ray_points``: a sweep as
  one job of tasks; ``ray_records``: jobs across server restarts; ``ray_secrets``: secret files by
  ticket; ``ray_job/driver.py``: what runs on the cluster);
- ``sandbox``: the sandbox's command line (what a run sees);
- ``launch``: the first step of every process (kernel limits, the run's own user id; ``uids``: those ids);
- ``process``: a started process seen from outside (limits, stopping, leftovers);
- ``prepare``, ``envs``: unpacking a version, choosing or building its environment (``building``: the
  build's own log and its steps as progress);
- ``folders``, ``logs``: a run's folder and its log;
- ``reports``: reading what a running run's hook writes, a page at a time.
"""
from .backtests import BacktestJob
from .executor import Executor, Exit, Prepared, RunFailed, RunLimits, RunRequest
from .folders import LOG_NAME
from .live import LiveJob
from .local import LocalExecutor
from .logs import LogSink, failure_reason, read_tail
from .process import RUN_TOKEN_VAR
from .sandbox import HOOK_DIR
from .service import Runner
from .sweeps import SweepJob

__all__ = [
    "BacktestJob", "Executor", "Exit", "HOOK_DIR", "LOG_NAME", "LiveJob", "LocalExecutor", "LogSink",
    "Prepared", "RUN_TOKEN_VAR", "RunFailed", "RunLimits", "RunRequest", "Runner", "SweepJob", "failure_reason",
    "read_tail",
]
