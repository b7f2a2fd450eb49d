"""Warm starts through the real server: a backtest handed to a pre-started sandbox gives what a cold
start gives (the RSI metrics of a direct run; a failure, a limit, a cancel and the log, alike), and
leaves nothing to the next run. A model tells which it got: in a warm start Blankly is imported
before its first line."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from tests.fixtures_notebooks import RSI_BACKTEST_ARGS
from tests.fixtures_server import ServerHandle, wait_for
from tests.server.runs import gone, model_zip, rsi_script, run_directly, run_processes

pytestmark = [pytest.mark.slow, pytest.mark.blankly]

PLANS = {
    "backtesting": {
        "small": {"cpu": 1000, "ram": 2048, "timeout": 300},
        "low-memory": {"cpu": 1000, "ram": 700, "timeout": 120},
        "short": {"cpu": 1000, "ram": 2048, "timeout": 3},
    },
    "live": {"nano": {"cpu": 250, "ram": 512}},
}
PRELOADED = 'import sys\nprint("preloaded:", "blankly" in sys.modules, flush=True)\n'
TAINTS = PRELOADED + ("import blankly\nblankly.is_deployed = False\nblankly.LEAKED = 'from the previous run'\n"
                      "print('tainted', flush=True)\n")
CHECKS = PRELOADED + ("import blankly\nprint('leaked:', hasattr(blankly, 'LEAKED') or not blankly.is_deployed)\n")
RAISES = PRELOADED + ("def step(bar):\n    raise ValueError(f'the strategy broke at bar {bar}')\n\n"
                      "print('before', flush=True)\nstep(3)\n")
GROWS = PRELOADED + "chunks = []\nwhile True:\n    chunks.append(b'x' * (50 << 20))\n"
SLEEPS = PRELOADED + "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
TALKS = PRELOADED + ("import sys\nfor i in range(300):\n    print('out', i, flush=True)\n"
                     "    print('err', i, file=sys.stderr, flush=True)\nsys.exit(3)\n")


def start(root: Path, workers: int) -> ServerHandle:
    plans = root / "plans.json"
    plans.write_text(json.dumps(PLANS))
    handle = ServerHandle(root / "data", root / "server.log",
                          ["--plans", str(plans), "--max-workers", "2", "--warm-workers", str(workers)])
    handle.start()
    assert handle.token_command("alice").returncode == 0
    return handle


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerHandle]]:
    """A server whose pool has filled (one backtest ran) and one that starts every run cold."""
    root = tmp_path_factory.mktemp("warm")
    handles: dict[str, ServerHandle] = {}
    try:
        for name, workers in (("warm", 2), ("cold", 0)):
            (root / name).mkdir()
            handles[name] = start(root / name, workers)
        first = finished(handles["warm"], submit(handles["warm"], model_zip(root / "first.zip", PRELOADED)))
        assert "preloaded: False" in log_of(handles["warm"], first)  # the server's first backtest starts cold
        yield handles
    finally:
        for handle in handles.values():
            handle.close()


def submit(server: ServerHandle, zip_path: Path, plan: str = "small", args: dict | None = None) -> str:
    with open(zip_path, "rb") as fh:
        answer = server.request("POST", "/model/backtest", files={"model": ("m.zip", fh)},
                                data={"plan": plan, "name": zip_path.stem, "createNew": "true",
                                      "backtestArgs": json.dumps(args or {})})
    assert answer.status_code == 200, answer.text
    return answer.json()["backtestId"]


def submit_warm(server: ServerHandle, zip_path: Path, plan: str = "small", args: dict | None = None) -> str:
    """Submit once a worker waits idle (the pool refills after each run)."""
    wait_for(lambda: idle_workers(server), "an idle warm worker", 60)
    return submit(server, zip_path, plan, args)


def idle_workers(server: ServerHandle) -> list[int]:
    alive = []
    for record in (server.data_dir / "runs" / "pids").glob("warm-*.json"):
        try:
            pid = json.loads(record.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            continue
        if not gone(pid):
            alive.append(pid)
    return alive


def finished(server: ServerHandle, backtest_id: str) -> dict:
    # A long poll: answered as soon as the status changes.
    def check() -> dict | None:
        status = server.request("GET", "/backtest/status", params={"backtestId": backtest_id, "wait": "5"}).json()
        return status if status["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(check, f"backtest {backtest_id}", 300)


def log_of(server: ServerHandle, status: dict) -> str:
    return server.request("GET", "/backtest/logs", params={"backtestId": status["backtestId"]}).json()["text"]


def model_lines(log: str) -> list[str]:
    """The model's own output (the runner's timestamped notes and the warm/cold line left out)."""
    return [line for line in log.splitlines() if not line.startswith(("[blankly_magics", "preloaded:"))]


def test_rsi_metrics_equal_a_direct_run_on_a_warm_worker_and_on_a_cold_start(
    servers: dict[str, ServerHandle], tmp_path: Path
) -> None:
    zip_path = model_zip(tmp_path / "rsi.zip", PRELOADED + rsi_script())
    ids = {"warm": submit_warm(servers["warm"], zip_path, args=RSI_BACKTEST_ARGS),
           "cold": submit(servers["cold"], zip_path, args=RSI_BACKTEST_ARGS)}
    direct = run_directly(tmp_path / "direct", RSI_BACKTEST_ARGS)["metrics"]
    for name, ident in ids.items():
        server = servers[name]
        status = finished(server, ident)
        assert status["status"] == "completed", status
        assert f"preloaded: {name == 'warm'}" in log_of(server, status)
        result = server.request("GET", "/backtest/result", params={"backtestId": ident}).json()["result"]
        assert result["metrics"] == direct, name


def test_a_model_changing_blankly_globals_leaves_the_next_run_untouched(
    servers: dict[str, ServerHandle], tmp_path: Path
) -> None:
    server = servers["warm"]
    taints = finished(server, submit_warm(server, model_zip(tmp_path / "taints.zip", TAINTS)))
    checks = finished(server, submit_warm(server, model_zip(tmp_path / "checks.zip", CHECKS)))
    assert "preloaded: True\ntainted" in log_of(server, taints)
    assert "preloaded: True\nleaked: False" in log_of(server, checks)


@pytest.mark.parametrize("script, plan", [(RAISES, "small"), (GROWS, "low-memory"), (SLEEPS, "short"),
                                          (TALKS, "small")], ids=["raises", "memory", "time", "output"])
def test_a_failing_run_ends_warm_as_it_ends_cold(servers: dict[str, ServerHandle], tmp_path: Path, script: str,
                                                 plan: str) -> None:
    zip_path = model_zip(tmp_path / "m.zip", script, prices=False)
    ids = {"warm": submit_warm(servers["warm"], zip_path, plan), "cold": submit(servers["cold"], zip_path, plan)}
    ends = {name: finished(servers[name], ident) for name, ident in ids.items()}
    logs = {name: log_of(servers[name], status) for name, status in ends.items()}
    for name in ends:
        assert f"preloaded: {name == 'warm'}" in logs[name]
    fields = ("status", "error", "exitCode")
    assert [ends["warm"][f] for f in fields] == [ends["cold"][f] for f in fields]
    assert model_lines(logs["warm"]) == model_lines(logs["cold"])
    assert ends["warm"]["status"] == "failed"
    if script is RAISES:
        assert ends["warm"]["error"] == "ValueError: the strategy broke at bar 3"
        assert model_lines(logs["warm"])[:3] == ["before", "Traceback (most recent call last):",
                                                  '  File "/blankly/model/bot.py", line 7, in <module>']
    elif script is GROWS:
        assert ends["warm"]["error"] == "stopped: exceeded the plan's memory limit of 700 MB"
    elif script is SLEEPS:
        assert ends["warm"]["error"] == "stopped: exceeded the plan's time limit of 3 s"
    else:
        assert ends["warm"]["error"] == "exited with code 3" and ends["warm"]["exitCode"] == 3
        expected = [f"{stream} {i}" for i in range(300) for stream in ("out", "err")]
        assert model_lines(logs["warm"]) == expected  # every line, in the order written
    for server in servers.values():
        assert run_processes(server.data_dir) == []


def test_a_cancelled_warm_run_ends_as_a_cold_one_and_leaves_no_process(
    servers: dict[str, ServerHandle], tmp_path: Path
) -> None:
    zip_path = model_zip(tmp_path / "sleeps.zip", SLEEPS, prices=False)
    ids = {"warm": submit_warm(servers["warm"], zip_path), "cold": submit(servers["cold"], zip_path)}
    ends = {}
    for name, ident in ids.items():
        server = servers[name]
        wait_for(lambda: "sleeping" in log_of(server, {"backtestId": ident}), "the model to start", 120)
        pids = run_processes(server.data_dir)
        assert pids
        answer = server.request("POST", "/backtest/cancel", data={"backtestId": ident})
        assert answer.status_code == 200
        ends[name] = finished(server, ident)
        assert wait_for(lambda: all(gone(pid) for pid in pids), "the run's processes to end", 30)
        assert f"preloaded: {name == 'warm'}" in log_of(server, ends[name])
    fields = ("status", "error", "exitCode")
    assert [ends["warm"][f] for f in fields] == [ends["cold"][f] for f in fields]
    assert ends["warm"]["status"] == "cancelled" and ends["warm"]["error"] == "cancelled by the user"


def test_a_long_poll_answers_when_the_status_changes_and_a_bad_wait_is_refused(
    servers: dict[str, ServerHandle], tmp_path: Path
) -> None:
    server = servers["warm"]
    ident = submit_warm(server, model_zip(tmp_path / "sleeps.zip", SLEEPS, prices=False))
    wait_for(lambda: "sleeping" in log_of(server, {"backtestId": ident}), "the model to start", 120)
    asked = time.monotonic()
    still = server.request("GET", "/backtest/status", params={"backtestId": ident, "wait": "1", "status": "running"})
    assert still.json()["status"] == "running" and time.monotonic() - asked >= 0.9  # no change: the whole wait
    at_once = server.request("GET", "/backtest/status", params={"backtestId": ident, "wait": "5", "status": "queued"})
    assert at_once.json()["status"] == "running"  # not what the caller last saw: answered at once
    server.request("POST", "/backtest/cancel", data={"backtestId": ident})
    assert server.request("GET", "/backtest/status",
                          params={"backtestId": ident, "wait": "20"}).json()["status"] == "cancelled"
    for bad in ("-1", "31", "soon", "nan"):
        answer = server.request("GET", "/backtest/status", params={"backtestId": ident, "wait": bad})
        assert answer.status_code == 400
        assert answer.json()["error"] == f"wait must be a number of seconds from 0 to 30, not {bad!r}"


def test_idle_workers_are_pre_started_sandboxes_and_warm_workers_0_starts_none(
    servers: dict[str, ServerHandle]
) -> None:
    warm = servers["warm"]

    def workers_inside() -> list[list[str]]:
        """For each idle worker, the command of the Python inside its sandbox (once it started)."""
        found = []
        for pid in idle_workers(warm):
            top = psutil.Process(pid)  # the top of a sandbox of its own, as a cold run's process is
            if top.name() == "bwrap":  # (the launcher before it)
                found += [p.cmdline() for p in top.children(recursive=True) if p.name().startswith("python")]
        return found if len(found) == 2 else []

    inside = wait_for(workers_inside, "two idle workers, each running the worker", 60)
    assert [cmd[1] for cmd in inside] == ["/blankly/worker/worker.py"] * 2
    assert idle_workers(servers["cold"]) == []
    assert not (servers["cold"].data_dir / "runs" / "warm").exists() or \
        list((servers["cold"].data_dir / "runs" / "warm").iterdir()) == []


def test_without_a_sandbox_a_warm_run_has_the_hook_and_gives_the_same_result(tmp_path: Path) -> None:
    """--isolation none: the workers are plain processes of the server's user, as cold runs are."""
    import base64

    from blankly_magics.server.runner import LocalExecutor, LogSink, RunRequest
    from blankly_magics.server.runner.process import RunStop

    executor = LocalExecutor(tmp_path / "data", None, warm_workers=1)
    executor.start()
    zip_path = model_zip(tmp_path / "rsi.zip", PRELOADED + rsi_script())
    results = []
    try:
        for n in range(2):  # the first starts cold and fills the pool; the second starts warm
            folder = tmp_path / "data" / "runs" / "backtests" / f"b{n}"
            request = RunRequest(run_id=f"backtest-b{n}", kind="backtest", folder=folder, zip_path=zip_path,
                                 version_id="v1", python_version="", deadline=True,
                                 env={"BACKTESTING": "1", "BACKTESTING_ID": f"b{n}", "BACKTESTING_ARGS":
                                      base64.b64encode(json.dumps(RSI_BACKTEST_ARGS).encode()).decode()})
            if n:
                wait_for(lambda: executor.pool.idle(), "an idle warm worker", 60)
            log = LogSink(folder / "output.log")
            prepared = executor.prepare(request, log, RunStop())
            end = executor.run(prepared, log, RunStop(), lambda pid, at: None)
            executor.release(prepared)
            assert end.code == 0 and f"preloaded: {bool(n)}" in log.path.read_text()
            results.append(json.loads(end.reports["backtest_result.json"])["metrics"])
    finally:
        executor.close()
    assert results[0] == results[1]


def test_a_warm_workers_value_out_of_range_is_refused_in_one_line() -> None:
    import subprocess
    import sys

    for bad, why in (("-1", "-1 is out of range for"), ("65", "65 is out of range for"), ("two", "'two' is not")):
        done = subprocess.run([sys.executable, "-m", "blankly_magics.server", "--warm-workers", bad],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].endswith(
            f"argument --warm-workers: {why} a whole number from 0 to 64")
