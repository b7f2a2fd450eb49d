"""Sweeps in the runner: points through Executor.run_points in real sandboxes, each reported as a backtest."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from blankly_magics.server.runner import BacktestJob, Runner, SweepJob
from tests.server.runs import Recorder, model_zip, run_processes

# A model that reports a result as the platform hook would, from its parameters (no Blankly needed here:
# these tests are about the bookkeeping; the real Blankly sweeps are tested through the server).
POINT = """
import base64, json, os, time
given = json.loads(base64.b64decode(os.environ.get("BLANKLY_PARAMETERS", "")) or "{}")
print("parameters", json.dumps(given, sort_keys=True), flush=True)
time.sleep(given.get("delay", 0))
if given.get("boom"):
    raise RuntimeError("boom at x=%s" % given.get("x"))
with open(os.path.join(os.environ["BLANKLY_MAGICS_REPORT_DIR"], "backtest_result.json"), "w") as fh:
    json.dump({"metrics": {"Sharpe Ratio": given.get("x", 0) * 2}}, fh)
"""


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def runner(tmp_path: Path, recorder: Recorder):
    r = Runner(tmp_path / "data", recorder.on_backtest, recorder.on_live, max_workers=2, grace=2.0,
               on_sweep=recorder.on_sweep)
    r.start()
    yield r
    r.shutdown()
    assert run_processes(tmp_path) == [], "the runner left child processes behind"


def sweep_job(tmp_path: Path, sweep_id: str, points: list[dict]) -> SweepJob:
    zip_path = model_zip(tmp_path / f"{sweep_id}.zip", POINT, prices=False)
    return SweepJob(sweep_id, tuple(
        BacktestJob(f"{sweep_id}-p{i}", "model1", "v1", "proj1", zip_path, "", {"to": "1y"}, parameters=point)
        for i, point in enumerate(points)))


def test_every_point_runs_with_its_parameters_and_reports_as_a_backtest(runner, recorder, tmp_path):
    runner.submit_sweep(sweep_job(tmp_path, "s1", [{"x": 1}, {"x": 2}, {"x": 3, "boom": True}, {"x": 4}]))
    final = recorder.wait_sweep("s1")
    assert final["status"] == "completed" and final["error"] is None and final["started_at"] <= final["ended_at"]
    points = [recorder.backtest(f"s1-p{i}") for i in range(4)]
    assert [p["status"] for p in points] == ["completed", "completed", "failed", "completed"]
    assert [p["result"]["metrics"]["Sharpe Ratio"] for i, p in enumerate(points) if i != 2] == [2, 4, 8]
    assert "RuntimeError: boom at x=3" in points[2]["error"]
    for i, p in enumerate(points):
        assert recorder.backtests[f"s1-p{i}"][0]["status"] == "running"  # each point reports as a backtest
        log = runner.backtest_log(f"s1-p{i}").read_text()
        assert f"backtest s1-p{i}, a point of sweep s1" in log
        assert "parameters {" in log and f'"x": {i + 1}' in log


def test_a_cancelled_sweep_keeps_its_finished_points_and_leaves_no_process(runner, recorder, tmp_path):
    points = [{"x": 1}, {"x": 2}, {"x": 3, "delay": 60}, {"x": 4, "delay": 60}, {"x": 5}]
    runner.submit_sweep(sweep_job(tmp_path, "s2", points))
    recorder.wait(lambda: [recorder.backtest(f"s2-p{i}").get("status") for i in range(4)]
                  == ["completed", "completed", "running", "running"])
    assert runner.cancel_sweep("s2")
    final = recorder.wait_sweep("s2")
    assert final["status"] == "cancelled" and final["error"] == "cancelled by the user"
    states = [recorder.backtest(f"s2-p{i}") for i in range(5)]
    assert [s["status"] for s in states] == ["completed", "completed", "cancelled", "cancelled", "cancelled"]
    assert states[0]["result"]["metrics"] == {"Sharpe Ratio": 2}
    assert all(s["error"] == "cancelled by the user" for s in states[2:])
    assert run_processes(tmp_path) == []
    assert not runner.cancel_sweep("s2")  # over


def test_a_point_cancelled_before_it_starts_is_skipped(runner, recorder, tmp_path):
    runner.submit_sweep(sweep_job(tmp_path, "s3", [{"x": 1, "delay": 2}, {"x": 2, "delay": 2}, {"x": 3}]))
    recorder.wait(lambda: recorder.backtest("s3-p0").get("status") == "running")
    assert runner.cancel_point("s3-p2") == "skipped"
    assert runner.cancel_point("s3-p0") == "running"  # a running point stops only with its sweep
    final = recorder.wait_sweep("s3")
    assert final["status"] == "completed"
    assert [recorder.backtest(f"s3-p{i}")["status"] for i in range(3)] == ["completed", "completed", "cancelled"]
    assert runner.cancel_point("s3-p2") is None  # no sweep holds it any more


def test_a_sweep_of_points_that_all_fail_failed(runner, recorder, tmp_path):
    runner.submit_sweep(sweep_job(tmp_path, "s4", [{"x": 1, "boom": True}]))
    final = recorder.wait_sweep("s4")
    assert final["status"] == "failed"
    assert final["error"] == "no point completed: every one failed (each point's error says why)"


def test_stopping_the_server_fails_what_runs_and_what_waits(tmp_path, recorder):
    r = Runner(tmp_path / "data", recorder.on_backtest, recorder.on_live, max_workers=1, grace=2.0,
               on_sweep=recorder.on_sweep)
    r.start()
    r.submit_sweep(sweep_job(tmp_path, "s5", [{"x": 1, "delay": 60}, {"x": 2}]))
    r.submit_sweep(sweep_job(tmp_path, "s6", [{"x": 3}]))
    recorder.wait(lambda: recorder.backtest("s5-p0").get("status") == "running")
    r.shutdown()
    assert recorder.sweep("s5")["status"] == "failed" and recorder.sweep("s6")["status"] == "failed"
    assert recorder.backtest("s5-p0")["error"] == "stopped: the server stopped while this backtest ran"
    assert recorder.backtest("s5-p1")["error"] == "the server stopped before this backtest ran"
    assert recorder.backtest("s6-p0")["error"] == "the server stopped before this backtest ran"
    assert run_processes(tmp_path) == []


def test_a_sweep_cancelled_while_it_waits_for_its_turn_ends_at_once(runner, recorder, tmp_path):
    runner.submit_sweep(sweep_job(tmp_path, "s7", [{"x": 1, "delay": 60}]))
    runner.submit_sweep(sweep_job(tmp_path, "s8", [{"x": 2}, {"x": 3}]))
    recorder.wait(lambda: recorder.backtest("s7-p0").get("status") == "running")
    assert runner.cancel_sweep("s8")
    assert recorder.sweep("s8")["status"] == "cancelled"  # said before cancel_sweep returned
    assert [recorder.backtest(f"s8-p{i}")["status"] for i in range(2)] == ["cancelled", "cancelled"]
    assert runner.cancel_sweep("s7")
    assert recorder.wait_sweep("s7")["status"] == "cancelled"


# A point that reports which price-cache files it found at its start, then writes its own (Blankly's
# cache folder per the exporter's backtest.json: ./price_caches, continuous caching on).
CACHE_POINT = """
import base64, json, os
given = json.loads(base64.b64decode(os.environ.get("BLANKLY_PARAMETERS", "")) or "{}")
found = sorted(os.listdir("price_caches")) if os.path.lexists("price_caches") else []
if given.get("link_folder"):
    os.symlink("/etc", "price_caches")
else:
    os.makedirs("price_caches", exist_ok=True)
    with open("price_caches/bars-%s.csv" % given["x"], "w") as fh:
        fh.write("time,close\\n")
    os.symlink("/etc/hostname", "price_caches/link-%s" % given["x"])
    os.mkfifo("price_caches/fifo-%s" % given["x"])
with open(os.path.join(os.environ["BLANKLY_MAGICS_REPORT_DIR"], "backtest_result.json"), "w") as fh:
    json.dump({"metrics": {"Sharpe Ratio": len(found)}, "found": found}, fh)
"""


PERIOD = {"start_date": "2020-01-01", "end_date": "2021-01-01"}


def cache_sweep(tmp_path: Path, sweep_id: str, points: int, args: Optional[dict] = None, **extra) -> SweepJob:
    zip_path = model_zip(tmp_path / f"{sweep_id}.zip", CACHE_POINT, prices=False)
    return SweepJob(sweep_id, tuple(
        BacktestJob(f"{sweep_id}-p{i}", "model1", "v1", "proj1", zip_path, "", args or dict(PERIOD),
                    parameters={"x": i, **extra})
        for i in range(points)))


def test_the_first_completed_points_price_cache_reaches_the_points_after_it(runner, recorder, tmp_path):
    runner.submit_sweep(cache_sweep(tmp_path, "c1", 6))
    assert recorder.wait_sweep("c1")["status"] == "completed"
    found = [recorder.backtest(f"c1-p{i}")["result"]["found"] for i in range(6)]
    assert found[0] == []  # the first points find none: nothing has completed yet
    # The last ones were copied after a point completed: its file, once; never a link or a fifo.
    assert found[5] in (["bars-0.csv"], ["bars-1.csv"]) and found[4] == found[5], found
    assert all(f in ([], found[5]) for f in found), found


def test_a_price_cache_that_is_a_link_is_never_shared(runner, recorder, tmp_path):
    runner.submit_sweep(cache_sweep(tmp_path, "c2", 5, link_folder=True))
    assert recorder.wait_sweep("c2")["status"] == "completed"
    assert [recorder.backtest(f"c2-p{i}")["result"]["found"] for i in range(5)] == [[]] * 5


def test_a_price_cache_is_shared_only_when_every_point_asks_for_one_period(runner, recorder, tmp_path):
    # Blankly reads a longer period's cached bars whole: a point asking for less would backtest past its end.
    runner.submit_sweep(cache_sweep(tmp_path, "c3", 5, args={"to": "1y"}))
    assert recorder.wait_sweep("c3")["status"] == "completed"
    assert [recorder.backtest(f"c3-p{i}")["result"]["found"] for i in range(5)] == [[]] * 5
