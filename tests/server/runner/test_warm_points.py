"""A sweep's points run in lanes forked from one warm worker (``LocalExecutor.run_points``), in real
sandboxes: each point's result equals a cold run's, a failing point fails alone (a raise, its memory
limit) and ends its lane, so the next point starts from a fresh fork, and a stop ends them all,
leaving no process."""
from __future__ import annotations

import base64
import json
import re
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from blankly_magics.server.runner import Exit, LocalExecutor, LogSink, RunLimits, RunRequest
from blankly_magics.server.runner.process import STOPPED, RunStop
from blankly_magics.server.runner.sandbox import find_bwrap
from tests.fixtures_server import wait_for
from tests.server.runs import gone, model_zip, rsi_script, run_processes

pytestmark = [pytest.mark.slow, pytest.mark.blankly]

PRELOADED = 'import sys\nprint("preloaded:", "blankly" in sys.modules, flush=True)\n'
POINTS = PRELOADED + """import os, blankly
point = os.environ["BACKTESTING_ID"]
print("leaked:", hasattr(blankly, "LEAKED"), "cwd:", os.getcwd(), "home:", os.environ["HOME"], flush=True)
blankly.LEAKED = point
if point == "p1":
    raise ValueError("point p1 broke")
if point == "p2":
    chunks = []
    while True:
        chunks.append(b"x" * (50 << 20))
"""
SLEEPS = PRELOADED + "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"


def requests(root: Path, zip_path: Path, args: list[dict], limits: RunLimits = RunLimits()) -> list[RunRequest]:
    return [RunRequest(
        run_id=f"backtest-p{i}", kind="backtest", folder=root / "runs" / "backtests" / f"p{i}", zip_path=zip_path,
        version_id="v1", python_version="", limits=limits, deadline=True,
        env={"BACKTESTING": "1", "BACKTESTING_ID": f"p{i}",
             "BACKTESTING_ARGS": base64.b64encode(json.dumps(a).encode()).decode()},
    ) for i, a in enumerate(args)]


class Sweep:
    """run_points' callbacks, recorded."""

    def __init__(self) -> None:
        self.logs: dict[str, LogSink] = {}
        self.starts: dict[str, int | None] = {}
        self.exits: dict[str, Exit] = {}

    def log_for(self, request: RunRequest) -> LogSink:
        return self.logs.setdefault(request.run_id, LogSink(request.folder / "output.log"))

    def run(self, executor: LocalExecutor, reqs: list[RunRequest], stop: RunStop | None = None, parallel: int = 2,
            stopped=lambda request: False) -> "Sweep":
        executor.run_points(reqs, self.log_for, stop or RunStop(),
                            lambda r, pid, at: self.starts.__setitem__(r.run_id, pid),
                            lambda r, end: self.exits.__setitem__(r.run_id, end), parallel=parallel, stopped=stopped)
        return self

    def log(self, run_id: str) -> str:
        return self.logs[run_id].path.read_text()

    def metrics(self, run_id: str) -> dict:
        return json.loads(self.exits[run_id].reports["backtest_result.json"])["metrics"]


@pytest.fixture(params=["bubblewrap"])
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalExecutor]:
    """An executor with a pool of one warm worker; runs confined, or (``none``) plain processes."""
    ex = LocalExecutor(tmp_path / "warm-data", find_bwrap() if request.param == "bubblewrap" else None,
                       warm_workers=1)
    ex.start()
    yield ex
    ex.close()


def test_each_point_equals_a_cold_run_of_it(executor: LocalExecutor, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "rsi.zip", PRELOADED + rsi_script())
    args = [{"initial_values": {"USD": usd}, "start_date": "2010-06-01", "end_date": end}
            for usd, end in ((10000, "2013-03-01"), (2500, "2012-01-01"), (50000, "2011-06-01"))]
    warm = Sweep().run(executor, requests(tmp_path / "warm-data", zip_path, args), parallel=1)  # one lane: all three
    cold_executor = LocalExecutor(tmp_path / "cold-data", find_bwrap(), warm_workers=0)
    cold_executor.start()
    cold = Sweep().run(cold_executor, requests(tmp_path / "cold-data", zip_path, args))
    metrics = set()
    for i in range(len(args)):
        run_id = f"backtest-p{i}"
        assert warm.exits[run_id].code == 0 and warm.exits[run_id].reason is None, warm.log(run_id)
        assert "preloaded: True" in warm.log(run_id) and "preloaded: False" in cold.log(run_id)
        assert warm.metrics(run_id) == cold.metrics(run_id)
        metrics.add(json.dumps(warm.metrics(run_id), sort_keys=True))
        assert warm.starts[run_id] and gone(warm.starts[run_id])
        folder = tmp_path / "warm-data" / "runs" / "backtests" / f"p{i}"
        assert sorted(p.name for p in folder.iterdir()) == ["output.log", "report"]  # the report kept, the rest gone
    assert len(metrics) == len(args)  # three different backtests
    executor.close()
    assert list((tmp_path / "warm-data" / "runs" / "warm").iterdir()) == []  # no sandbox left, idle or not


@pytest.mark.parametrize("executor", ["bubblewrap", "none"], indirect=True)
def test_a_failing_point_fails_alone_and_the_point_after_it_starts_from_a_fresh_fork(executor: LocalExecutor,
                                                                                     tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "points.zip", POINTS, prices=False)
    reqs = requests(tmp_path / "warm-data", zip_path, [{}] * 5, RunLimits(ram=700))
    sweep = Sweep().run(executor, reqs, stopped=lambda r: r.run_id == "backtest-p3", parallel=1)  # one lane
    ends = {run_id: (end.code, end.reason) for run_id, end in sweep.exits.items()}
    assert ends == {
        "backtest-p0": (0, None), "backtest-p1": (1, None), "backtest-p4": (0, None),
        "backtest-p2": (-9, "stopped: exceeded the plan's memory limit of 700 MB"),
        "backtest-p3": (None, STOPPED),  # skipped before it started
    }
    inside = re.escape("/blankly" if executor.bwrap else f"{executor.warm_dir}/")  # a point's folders, as it sees them
    assert "ValueError: point p1 broke" in sweep.log("backtest-p1")
    assert re.search(rf'File "{inside}\S*/model/1/bot.py", line 8, in <module>', sweep.log("backtest-p1"))
    for i in (0, 1, 2, 4):
        assert re.search(rf"leaked: \w+ cwd: {inside}\S*/model/{i} home: {inside}\S*/home/{i}\n",
                         sweep.log(f"backtest-p{i}"))
    # p1 runs after p0 in p0's process (a module p0 changed stays changed, as in a kernel loop); p1
    # raised, so p2 starts in a new fork, and p2 was killed, so p4 does too.
    assert [re.search(r"leaked: (\w+)", sweep.log(f"backtest-p{i}"))[1] for i in (0, 1, 2, 4)] == [
        "False", "True", "False", "False"]
    assert "backtest-p3" not in sweep.logs
    assert run_processes(tmp_path) == []


def test_a_stop_ends_every_point_and_leaves_no_process(executor: LocalExecutor, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "sleeps.zip", SLEEPS, prices=False)
    reqs = requests(tmp_path / "warm-data", zip_path, [{}] * 4)
    stop, sweep = RunStop(), Sweep()
    thread = threading.Thread(target=sweep.run, args=(executor, reqs, stop))
    thread.start()
    wait_for(lambda: len(sweep.starts) == 2 and all("sleeping" in sweep.log(r) for r in sweep.starts),
             "two points to run", 120)
    pids = list(sweep.starts.values())
    stopped_at = time.monotonic()
    stop.set()
    thread.join(60)
    assert not thread.is_alive() and time.monotonic() - stopped_at < 15
    assert {r: e.reason for r, e in sweep.exits.items()} == {f"backtest-p{i}": STOPPED for i in range(4)}
    assert sorted(r for r, e in sweep.exits.items() if e.code is None) == ["backtest-p2", "backtest-p3"]
    assert all(pid and gone(pid) for pid in pids)
    assert run_processes(tmp_path) == []
