"""The real server with ``--executor ray``: runs are jobs of a real head on loopback, and they
outlive the server, which takes them back when it starts again."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.fixtures_notebooks import RSI_BACKTEST_ARGS
from tests.fixtures_server import ServerHandle, wait_for
from tests.server.runner.ray_heads import RayHead, free_port, start_head
from tests.server.runs import TICKER, model_zip, rsi_script
from tests.server.test_runs_http import deployment, get, upload, wait_backtest
from tests.server.test_sweeps_http import rsi_sweep_zip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    head = start_head(cpus=2)
    yield head
    head.stop()


@pytest.fixture
def ray_server(ray_head: RayHead, server_factory: Callable[..., ServerHandle]) -> ServerHandle:
    return server_factory(args=["--executor", "ray", "--ray-address", ray_head.address])


def ticks(server: ServerHandle, model_id: str) -> int:
    return get(server, "/model/logs", modelId=model_id)["text"].count("tick ")


def test_a_live_model_runs_as_a_job_outlives_server_restarts_and_stops_on_kill(
        ray_head: RayHead, ray_server: ServerHandle, tmp_path: Path) -> None:
    assert "runs go to the Ray cluster at " + ray_head.address in ray_server.log()
    zip_path = model_zip(tmp_path / "tick.zip", TICKER, prices=False)
    ids = upload(ray_server, "/model/deploy", zip_path, plan="nano", name="ticker", createNew="true")
    model_id = ids["modelId"]
    wait_for(lambda: deployment(ray_server, model_id)["state"] == "running", "the model to run")
    wait_for(lambda: ticks(ray_server, model_id) >= 2, "the log to show ticks")
    [job] = ray_head.jobs(modelId=model_id)
    assert job.status == "RUNNING" and job.metadata["kind"] == "live"
    assert job.metadata["versionId"] == ids["versionId"] and job.metadata["userId"] == ray_server.user_id()

    for stop in (ray_server.stop, ray_server.kill):  # a clean stop, then a crash
        stop()
        seen = ticks_on_cluster(ray_head, job.submission_id)
        wait_for(lambda: ticks_on_cluster(ray_head, job.submission_id) > seen, "the job to tick with no server")
        ray_server.start()  # it takes the job back: starting until it has seen the job running
        wait_for(lambda: deployment(ray_server, model_id)["state"] == "running", "the adopted model to run")
        # The log is rebuilt from the job's own, from its start, and follows it on.
        wait_for(lambda: ticks(ray_server, model_id) > seen, "the log to follow the job again")
        assert "tick 1\n" in get(ray_server, "/model/logs", modelId=model_id)["text"]
        assert [j.submission_id for j in ray_head.jobs(modelId=model_id)] == [job.submission_id]
        assert "watching Ray job " + job.submission_id + " again" in get(ray_server, "/model/logs",
                                                                        modelId=model_id)["text"]

    killed = ray_server.request("POST", "/model/kill", data={"modelId": model_id})
    assert killed.status_code == 200 and killed.json()["state"] == "stopped", killed.text
    assert [j.status for j in ray_head.jobs(modelId=model_id)] == ["STOPPED"]
    ray_server.restart()  # stopped stays stopped: nothing is submitted again
    assert deployment(ray_server, model_id)["state"] == "stopped"
    assert len(ray_head.jobs(modelId=model_id)) == 1


def test_a_backtest_running_across_a_server_restart_completes_with_its_result(
        ray_head: RayHead, ray_server: ServerHandle, tmp_path: Path) -> None:
    slow = "import time\nprint('warming up', flush=True)\ntime.sleep(8)\n" + rsi_script()
    zip_path = model_zip(tmp_path / "slow-rsi.zip", slow)
    ids = upload(ray_server, "/model/backtest", zip_path, plan="small", name="slow RSI", createNew="true",
                 backtestArgs=json.dumps(RSI_BACKTEST_ARGS))
    wait_for(lambda: "warming up" in get(ray_server, "/backtest/logs", backtestId=ids["backtestId"])["text"],
             "the backtest to start")
    ray_server.restart()
    status = wait_backtest(ray_server, ids["backtestId"])
    assert status["status"] == "completed", (status, ray_server.log())
    result = get(ray_server, "/backtest/result", backtestId=ids["backtestId"])["result"]
    assert result["initialAccountValue"] == 10000 and "Sharpe Ratio" in result["metrics"]
    logs = get(ray_server, "/backtest/logs", backtestId=ids["backtestId"])
    assert logs["complete"] and "warming up" in logs["text"] and "Blankly Metrics" in logs["text"]
    assert len(ray_head.jobs(backtestId=ids["backtestId"])) == 1


@pytest.mark.blankly
def test_a_sweep_over_http_runs_as_one_job_and_its_points_equal_single_backtests(
        ray_head: RayHead, ray_server: ServerHandle, tmp_path: Path) -> None:
    zip_path = rsi_sweep_zip(tmp_path / "sweep")
    with open(zip_path, "rb") as fh:
        made = ray_server.request("POST", "/sweep/create", files={"model": ("model.zip", fh, "application/zip")},
                                  data={"name": "rsi on ray", "grid": json.dumps({"low": [25, 30]}),
                                        "backtestArgs": json.dumps(RSI_BACKTEST_ARGS)})
    assert made.status_code == 200, made.text
    sweep_id, points = made.json()["sweepId"], made.json()["backtestIds"]

    def finished() -> dict:
        status = get(ray_server, "/sweep/status", sweepId=sweep_id)
        return status if status["status"] in ("completed", "failed", "cancelled") else None

    final = wait_for(finished, "the sweep to finish", timeout=400)
    assert final["status"] == "completed" and final["states"] == ["completed", "completed"], final
    [job] = ray_head.jobs(kind="sweep", modelId=made.json()["modelId"])  # the points are tasks of one job
    assert job.metadata["points"] == "2" and job.status == "SUCCEEDED"
    table = get(ray_server, "/sweep/table", sweepId=sweep_id)["rows"]

    # the point low=30 is the version's own defaults: a plain backtest of it gives the same metrics
    single = upload(ray_server, "/model/backtest", zip_path, modelId=made.json()["modelId"],
                    backtestArgs=json.dumps(RSI_BACKTEST_ARGS))
    assert wait_backtest(ray_server, single["backtestId"])["status"] == "completed"
    alone = get(ray_server, "/backtest/result", backtestId=single["backtestId"])["result"]["metrics"]
    assert table[1]["parameters"] == {"low": 30}
    assert {k: alone[k] for k in ("Sharpe Ratio", "Cumulative Returns (%)")} == \
        {k: table[1]["metrics"][k] for k in ("Sharpe Ratio", "Cumulative Returns (%)")}
    assert table[0]["metrics"] != table[1]["metrics"]  # low=25 trades otherwise
    log = get(ray_server, "/backtest/logs", backtestId=points[0])["text"]
    assert f"a point of sweep {sweep_id}" in log and "Blankly Metrics" in log


def test_an_unreachable_cluster_or_a_missing_address_stops_the_server_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    for extra, code, message in (
        (["--ray-address", f"http://127.0.0.1:{port}"], 1,
         f"error: cannot reach the Ray cluster's job API at http://127.0.0.1:{port} (nothing answers there); "
         "start the cluster (ray start --head) or give its dashboard's address with --ray-address"),
        ([], 2, "error: --executor ray needs --ray-address URL: the Ray dashboard's address, "
                "e.g. http://127.0.0.1:8265"),
    ):
        done = subprocess.run([sys.executable, "-m", "blankly_magics.server", "--executor", "ray", "--port", "0",
                               "--data-dir", str(tmp_path / "data"), *extra],
                              capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stderr.strip()) == (code, message)
        assert not (tmp_path / "data" / "server.json").exists()


def ticks_on_cluster(head: RayHead, submission_id: str) -> int:
    return head.client().get_job_logs(submission_id).count("tick ")
