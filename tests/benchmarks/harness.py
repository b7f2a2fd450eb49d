"""What every benchmark shares: result rows, medians of interleaved repeats, child
processes and a real local server that is always stopped.

Absolute times on a shared 2-core machine are noise, so every figure is a ratio
against a baseline measured in the same run, with ours and the baseline
interleaved (ours, baseline, ours, ...) so that drift hits both alike.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"
START_TIMEOUT = 60.0


@dataclass
class Row:
    """One line of the table. ``ratio`` is always ours / baseline, in ``unit``."""

    name: str
    ours: float
    baseline: float
    unit: str  # "ms", "s", "MB", "uploads/s"
    details: list[str] = field(default_factory=list)  # what dominates, cross-checks

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("inf")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each function once per round, in turn, ``repeats`` rounds; the samples per name."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            samples[name].append(fn())
    return samples


def spread(values: Sequence[float], digits: int = 1) -> str:
    """``median (min..max, n=N)`` for the notes."""
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f}, n={len(values)})"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for benchmark children: the repo importable, no stray targets.

    ``BLANKLY_DEPLOY_URL`` and friends are dropped so a child never talks to anything
    but the server the benchmark started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLANKLY_", "JPY_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PLOOMBER_STATS_ENABLED"] = "false"  # jupysql's telemetry would try the network
    env.update(extra)
    return env


def run_child(
    code: str, *args: str, env: dict[str, str], cwd: Optional[Path] = None, timeout: float = 600.0
) -> str:
    """Run ``python -c code args...`` and return its stdout; a failure raises with the child's stderr tail."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def last_json_line(text: str) -> dict:
    """The last stdout line that is a JSON object (children print their figures that way)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"the benchmark child printed no JSON result: {text[-500:]!r}")


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the child's process group (it was started in its own session), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


@dataclass
class Server:
    url: str
    data_dir: Path
    proc: subprocess.Popen

    def refresh_token(self, user: str = "bench") -> str:
        out = subprocess.run(
            [sys.executable, "-m", "blankly_magics.server", "token", "--data-dir", str(self.data_dir), "--user", user],
            env=child_env(), capture_output=True, text=True, timeout=60, check=True,
        )
        return out.stdout.strip().splitlines()[-1]


def wait_for_file(path: Path, proc: subprocess.Popen, what: str, log: Path) -> dict:
    """Wait for a JSON file a child writes once it is ready (server.json)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {START_TIMEOUT:g} s: {log.read_text(errors='replace')[-2000:]}")


@contextmanager
def server_process(args: Sequence[str], data_dir: Path, what: str) -> Iterator[Server]:
    """``python args...`` that writes ``data_dir/server.json`` once it accepts connections
    (our server, or the bare baseline of the throughput benchmark); always stopped on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, *args], env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        info = wait_for_file(data_dir / "server.json", proc, what, log)
        yield Server(info["url"], data_dir, proc)
    finally:
        stop_process(proc)


def local_server(data_dir: Path, args: Sequence[str] = ()) -> ContextManager[Server]:
    """Our real server on a free loopback port, started as users start it."""
    return server_process(
        ["-m", "blankly_magics.server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), *args],
        data_dir, "the local server",
    )


# The start of every IPython worker's script: a real shell, ``run(source)`` runs a cell as a notebook
# does (its output kept, its start and end times returned), ``answer(**data)`` replies a JSON line.
SHELL_WORKER = r"""
import contextlib, io, json, os, sys, time
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

config = Config()
config.HistoryAccessor.enabled = False
shell = InteractiveShell.instance(config=config)
reply = sys.stdout

def run(source):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        started = time.time()
        result = shell.run_cell(source, store_history=True)
        ended = time.time()
    if not result.success:
        error = result.error_in_exec or result.error_before_exec
        raise SystemExit(f"the cell failed: {error!r}\n{out.getvalue()[-3000:]}")
    return started, ended, out.getvalue()

def answer(**data):
    reply.write(json.dumps(data) + "\n")
    reply.flush()
"""


class ShellWorker:
    """A worker process running ``SHELL_WORKER`` + ``script`` with ``args``: ``ask(line)`` sends it a
    line and returns its JSON answer; ``close()`` ends it and the embedded server it started."""

    def __init__(self, script: str, args: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.env = env
        self.log = open(log, "w+")
        self.proc = subprocess.Popen([sys.executable, "-c", SHELL_WORKER + script, *args], env=env, cwd=cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     start_new_session=True)

    def read(self) -> dict:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.proc.wait(30)
            self.log.seek(0)
            raise RuntimeError(f"the IPython worker stopped ({self.proc.returncode}): {self.log.read()[-3000:]}")
        return json.loads(line)

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self.read()

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        stop_process(self.proc)
        self.log.close()
        # the embedded server is detached from the worker: stop it through its server.json
        subprocess.run([sys.executable, "-c", "from blankly_magics.embedded import stop_local_server; "
                        "stop_local_server()"], env=self.env, timeout=60, check=False)


def format_value(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.2f} MB"
    return f"{value:.1f} {unit}"


def table(rows: Sequence[Row]) -> str:
    header = ("benchmark", "ours", "baseline", "ratio")
    lines = [(r.name, format_value(r.ours, r.unit), format_value(r.baseline, r.unit), f"{r.ratio:.3f}") for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(line.rstrip() for line in out)
