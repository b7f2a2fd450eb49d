"""A run's process, seen from the server: starting it, enforcing its plan, stopping it, reaping leftovers.

Every process a run starts is started through launch.py (kernel limits, then the
sandbox) in a session of its own, with its output piped into the run's log. The
server keeps the upper hand from outside the sandbox:

- it waits for the exit without reaping (``waitid(WNOWAIT)``), so the pid stays
  the run's until the server is done with it, and wakes the moment it exits;
- every ``POLL`` seconds it measures the run's process tree from the host
  (resident memory of every process, how many processes) and the run's folder
  (less often when walking it takes long, at least every ``DISK_POLL`` seconds),
  and stops the run past a limit; the kernel enforces the largest file
  (RLIMIT_FSIZE) and, for a run with a user id of its own, a backstop on
  processes (RLIMIT_NPROC) between two polls;
- to stop a run it sends SIGTERM to each process of the tree, then SIGKILL to
  the sandbox's outermost process: bubblewrap's init inside dies with it
  (``--die-with-parent``), and the kernel ends every process of a PID namespace
  whose init is gone, so nothing of the run survives;
- bubblewrap passes the model's exit status on, a signal as 128+N, which is
  turned back into -N as Popen reports it for an unconfined process.

``--die-with-parent`` follows the thread that started the process: a run's
process is started, watched and reaped by one thread, which lives as long as it.

A pid file per process lets the next server kill what a crashed one left behind
(only needed when runs are not confined: a sandbox dies with its server),
checking each process's start time so a reused pid is never hit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from ...files import private_dir, write_json
from .logs import LogSink

RUN_TOKEN_VAR = "BLANKLY_MAGICS_RUN_TOKEN"  # marks every process of a run, grandchildren too
LAUNCHER = Path(__file__).resolve().parent / "launch.py"
POLL = 0.25  # seconds between checks of memory, processes and the deadline (an exit wakes at once)
DISK_POLL = 2.0  # most seconds between measurements of the run's folder (a big folder costs more to walk)
STOPPED = "stop"  # watch()'s reason when the run's stop event was set
NICE = 10  # runs yield the CPU to the server and the notebook


def memory_reason(mb: int) -> str:
    return f"stopped: exceeded the plan's memory limit of {mb} MB"


def disk_reason(mb: int) -> str:
    return f"stopped: exceeded the plan's disk allowance of {mb} MB"


def process_reason(count: int) -> str:
    return f"stopped: exceeded the plan's process limit of {count}"


def time_reason(seconds: float) -> str:
    return f"stopped: exceeded the plan's time limit of {seconds:g} s"


@dataclass(frozen=True)
class Limits:
    """What watch() enforces (None: not enforced)."""

    ram_mb: Optional[int] = None
    timeout: Optional[float] = None
    disk_mb: Optional[int] = None
    processes: Optional[int] = None


class RunStop(threading.Event):
    """A run's stop request. Setting it also sets ``wake``, which the run's process
    sets too when it exits: the watcher sleeps on ``wake`` and sees either at once."""

    def __init__(self) -> None:
        super().__init__()
        self.wake = threading.Event()

    def set(self) -> None:
        super().set()
        self.wake.set()


def exited(proc: subprocess.Popen) -> bool:
    """True once the process has exited, WITHOUT reaping it, so its pid stays ours."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, AttributeError):  # reaped already, or no waitid here
        return proc.poll() is not None
    return info is not None


def _wake_on_exit(proc: subprocess.Popen, wake: threading.Event) -> None:
    """Set ``wake`` the moment the process exits (a thread blocked in waitid, which does not reap)."""
    if not hasattr(os, "waitid"):
        return

    def wait() -> None:
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        except OSError:  # ChildProcessError: finish() reaped it first
            pass
        wake.set()

    threading.Thread(target=wait, name=f"exit-{proc.pid}", daemon=True).start()


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def usage(procs: list[Any], sandboxed: bool) -> tuple[int, int]:
    """(resident bytes, process count) of ``procs`` (psutil handles), bubblewrap's left out of the count."""
    import psutil

    rss, count = 0, 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
            if not (sandboxed and proc.name() == "bwrap"):
                count += 1
        except psutil.Error:
            pass
    return rss, count


@dataclass
class Child:
    """One started process (and everything it starts), with the files that describe it."""

    proc: subprocess.Popen
    log: LogSink
    pid_file: Path
    token: str
    started: float
    sandboxed: bool
    code: Optional[int] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return exited(self.proc)

    def wake_on_exit(self, wake: threading.Event) -> None:
        _wake_on_exit(self.proc, wake)

    def tree(self) -> list[Any]:
        """psutil handles of the process and its descendants (a handle never hits a reused pid)."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root] + root.children(recursive=True)
        except psutil.Error:
            return []

    def usage(self) -> tuple[int, int]:
        """(resident bytes, process count) of the run, bubblewrap's own processes left out of the count."""
        return usage(self.tree(), self.sandboxed)

    def terminate(self) -> None:
        """SIGTERM to every process of the run (a sandbox's init has no handler: it ignores it)."""
        if not self.sandboxed:
            signal_group(self.pid, signal.SIGTERM)
            return
        for proc in self.tree()[1:]:
            try:
                proc.terminate()
            except Exception:  # gone meanwhile
                pass

    def kill(self) -> None:
        """SIGKILL the whole run at once."""
        if not self.sandboxed:
            signal_group(self.pid, signal.SIGKILL)
            return
        procs = self.tree()
        # The outermost first: its PID namespace then dies with bubblewrap's init.
        for proc in procs:
            try:
                proc.kill()
            except Exception:
                pass

    def stop(self, grace: float) -> None:
        """SIGTERM the run, SIGKILL it after ``grace`` seconds, then reap."""
        if self.code is None and not self.exited():
            self.terminate()
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not self.exited():
                time.sleep(0.05)
        self.finish()

    def finish(self) -> int:
        """Kill whatever is left (before reaping the leader), reap, clean up; the exit code.

        Idempotent: once the leader is reaped its pid may belong to someone else,
        so it is never signalled again."""
        if self.code is None:
            self.kill()
            code = self.proc.wait()
            if self.sandboxed and 128 < code < 128 + 65:
                code = -(code - 128)  # bubblewrap's 128+N for a model killed by signal N
            self.code = code
            self.log.drain()
            self.pid_file.unlink(missing_ok=True)
        return self.code


def launcher_command(spec: dict[str, Any]) -> list[str]:
    """The command that runs launch.py with ``spec`` under the server's own interpreter."""
    return [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec)]


def spawn(
    command: list[str],
    *,
    env: dict[str, str],
    cwd: Optional[Path],
    log: LogSink,
    pid_file: Path,
    record: dict[str, Any],
    sandboxed: bool,
    pass_fds: tuple[int, ...] = (),
) -> Child:
    """Start ``command`` (a launcher command) in a new session, its output piped to ``log``
    (``pass_fds``: descriptors the process keeps, such as a warm worker's control socket)."""
    proc = subprocess.Popen(
        command,
        cwd=str(cwd) if cwd is not None else "/",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        pass_fds=pass_fds,
    )
    log.attach(proc.stdout)
    write_pid_record(pid_file, proc.pid, env[RUN_TOKEN_VAR], record)
    return Child(proc=proc, log=log, pid_file=pid_file, token=env[RUN_TOKEN_VAR], started=time.time(),
                 sandboxed=sandboxed)


class Watched(Protocol):
    """What watch() needs of a process: a ``Child``, or a sweep's point (points.py)."""

    log: LogSink

    def exited(self) -> bool: ...
    def wake_on_exit(self, wake: threading.Event) -> None: ...
    def usage(self) -> tuple[int, int]: ...
    def kill(self) -> None: ...
    def stop(self, grace: float) -> None: ...
    def finish(self) -> int: ...


def watch(child: Watched, limits: Limits, stop: RunStop, disk_use: Optional[Callable[[], int]], grace: float
          ) -> tuple[int, Optional[str]]:
    """Wait for a process, enforcing ``limits``; (exit code, why it was stopped or None).

    Its exit and a stop request end the wait at once (both set ``stop.wake``);
    the limits are checked every POLL seconds meanwhile, from POLL seconds on (the folder
    every DISK_POLL)."""
    ends = time.monotonic() + limits.timeout if limits.timeout else None
    next_disk = 0.0  # measured as often as the rest while the folder is small, less once measuring costs
    reason: Optional[str] = None
    stop.wake.clear()  # a wake left by an earlier process of this run; every check below runs anyway
    child.wake_on_exit(stop.wake)
    # The first measurement after a moment: one that ends sooner (a sweep's point) is never walked.
    stop.wake.wait(POLL)
    stop.wake.clear()
    while not child.exited():
        if stop.is_set():
            child.stop(grace)
            return child.finish(), STOPPED
        now = time.monotonic()
        if ends is not None and now > ends:
            reason = time_reason(limits.timeout or 0)
            child.stop(min(grace, 2.0))
            break
        reason = _over_limit(child, limits)
        if reason is None and disk_use is not None and limits.disk_mb and now >= next_disk:
            used = disk_use()
            next_disk = now + min(DISK_POLL, max(POLL, 10 * (time.monotonic() - now)))
            if used > limits.disk_mb << 20:
                reason = disk_reason(limits.disk_mb)
        if reason is not None:
            child.kill()
            break
        stop.wake.wait(POLL)
        stop.wake.clear()  # cleared before the checks above run again, so no wake is lost
    code = child.finish()
    if reason is None and code != 0:
        reason = _reason_from_exit(child, limits, code)
    return code, reason


def _over_limit(child: Watched, limits: Limits) -> Optional[str]:
    if not (limits.ram_mb or limits.processes):
        return None
    rss, count = child.usage()
    if limits.ram_mb and rss > limits.ram_mb << 20:
        return memory_reason(limits.ram_mb)
    if limits.processes and count > limits.processes:
        return process_reason(limits.processes)
    return None


def _reason_from_exit(child: Watched, limits: Limits, code: int) -> Optional[str]:
    """A limit the kernel enforced by itself: the largest file (SIGXFSZ), or a failed allocation."""
    if limits.disk_mb and code == -signal.SIGXFSZ:
        return disk_reason(limits.disk_mb)
    tail = child.log.tail(2000)
    if limits.ram_mb and "MemoryError" in tail:
        return memory_reason(limits.ram_mb) + " (MemoryError)"
    if limits.disk_mb and "File too large" in tail:
        return disk_reason(limits.disk_mb)
    if limits.processes and ("Resource temporarily unavailable" in tail or "BlockingIOError" in tail):
        return process_reason(limits.processes)  # a fork refused by the kernel's backstop
    return None


# ---------------------------------------------------------------- leftovers of a crashed server

def write_pid_record(pid_file: Path, pid: int, token: str, record: dict[str, Any]) -> None:
    """Record a started process so a later server can kill it (see reap_leftovers)."""
    import psutil

    try:
        create_time: Optional[float] = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = None
    data = dict(record)
    data.update(pid=pid, pgid=pid, create_time=create_time, token=token, server_pid=os.getpid(),
                server_create_time=psutil.Process().create_time())
    private_dir(pid_file.parent)
    write_json(pid_file, data, fsync=False)


def reap_leftovers(pids_dir: Path) -> list[dict[str, Any]]:
    """Kill processes a previous server left running; return their pid records.

    A process is only killed when it is provably ours: the recorded leader with
    the recorded start time, or any process carrying the run's token in its
    environment (its grandchildren). Records of a server that is still alive
    (another server on the same data dir) are left alone.
    """
    import psutil

    records = []
    for path in sorted(Path(pids_dir).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if rec.get("server_pid") != os.getpid() and _alive_as(rec.get("server_pid"), rec.get("server_create_time")):
            continue
        records.append((path, rec))
    if not records:
        return []
    tokens = {rec.get("token") for _, rec in records if rec.get("token")}
    # The whole group at once first: a process being forked right now cannot slip out.
    for _, rec in records:
        if _alive_as(rec.get("pid"), rec.get("create_time")):
            signal_group(rec["pid"], signal.SIGKILL)
    # Then anything else carrying a run's token (a descendant that left the group).
    for _ in range(3):
        victims = []
        for proc in psutil.process_iter():
            if proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get(RUN_TOKEN_VAR) in tokens and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    victims.append(proc)
            except (psutil.Error, OSError):
                continue
        if not victims:
            break
        psutil.wait_procs(victims, timeout=5)
    for path, _ in records:
        path.unlink(missing_ok=True)
    return [rec for _, rec in records]


def _alive_as(pid: Any, create_time: Any) -> bool:
    """True if ``pid`` is running and started at ``create_time`` (so it is the same process)."""
    import psutil

    if not isinstance(pid, int) or not isinstance(create_time, (int, float)):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 0.01
    except psutil.Error:
        return False
