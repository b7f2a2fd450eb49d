"""Real runs through the real server: upload a zip over HTTP, watch it run, stop it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.fixtures_notebooks import RSI_BACKTEST_ARGS
from tests.fixtures_server import ServerHandle, wait_for
from tests.server.runs import TICKER, gone, model_zip, rsi_script, run_directly, run_processes

TERMINAL = ("completed", "failed", "cancelled")


def upload(server: ServerHandle, route: str, zip_path: Path, **fields: Any) -> dict:
    with open(zip_path, "rb") as fh:
        answer = server.request("POST", route, data=fields,
                                files={"model": ("model.zip", fh, "application/zip")})
    assert answer.status_code == 200, answer.text
    return answer.json()


def get(server: ServerHandle, path: str, **params: Any) -> dict:
    answer = server.request("GET", path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_backtest(server: ServerHandle, backtest_id: str, timeout: float = 300) -> dict:
    return wait_for(
        lambda: (s := get(server, "/backtest/status", backtestId=backtest_id))["status"] in TERMINAL and s,
        f"backtest {backtest_id} to finish", timeout,
    )


def deployment(server: ServerHandle, model_id: str) -> dict:
    return get(server, "/model/deployment", modelId=model_id)


@pytest.mark.slow
def test_an_rsi_backtest_over_http_equals_a_direct_run(local_server: ServerHandle, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "rsi.zip", rsi_script())
    ids = upload(local_server, "/model/backtest", zip_path, plan="small", name="RSI on GOOG",
                 createNew="true", backtestArgs=json.dumps(RSI_BACKTEST_ARGS),
                 backtestDescription="first try")
    assert ids["status"] == "success" and ids["backtestId"] and ids["versionId"]
    status = wait_backtest(local_server, ids["backtestId"])
    assert status["status"] == "completed", (status, local_server.log())
    assert status["exitCode"] == 0 and status["error"] is None
    answer = get(local_server, "/backtest/result", backtestId=ids["backtestId"])
    result = answer["result"]
    direct = run_directly(tmp_path / "direct", RSI_BACKTEST_ARGS)
    assert result["metrics"] == direct["metrics"]
    assert len(result["trades"]) == direct["trades"]
    assert result["initialAccountValue"] == 10000
    assert result["accountValues"][-1]["value"] == result["finalAccountValue"]
    assert result["symbols"] == ["GOOG-USD"] and result["quoteAsset"] == "USD"
    logs = get(local_server, "/backtest/logs", backtestId=ids["backtestId"])
    assert logs["complete"] is True and "Blankly Metrics" in logs["text"]
    # The same version backtested again with other args, without re-uploading, gives another outcome.
    again = local_server.request("POST", "/model/backtestUploadedModel", json={
        "modelId": ids["modelId"], "versionId": ids["versionId"], "plan": "small",
        "backtestArgs": {**RSI_BACKTEST_ARGS, "initial_values": {"USD": 2500}},
    })
    assert again.status_code == 200, again.text
    second = wait_backtest(local_server, again.json()["backtestId"])
    assert second["status"] == "completed", second
    other = get(local_server, "/backtest/result", backtestId=second["backtestId"])["result"]
    assert other["initialAccountValue"] == 2500
    assert other["finalAccountValue"] != result["finalAccountValue"]


@pytest.mark.blankly
def test_a_failing_model_over_http_reports_the_reason_and_its_traceback(
    local_server: ServerHandle, tmp_path: Path
) -> None:
    zip_path = model_zip(tmp_path / "raise.zip", "raise ValueError('bad config')\n", prices=False)
    ids = upload(local_server, "/model/backtest", zip_path, plan="small", name="broken",
                 createNew="true", backtestArgs="{}")
    status = wait_backtest(local_server, ids["backtestId"])
    assert status["status"] == "failed" and status["error"] == "ValueError: bad config"
    logs = get(local_server, "/backtest/logs", backtestId=ids["backtestId"])
    assert "Traceback (most recent call last)" in logs["text"]
    assert get(local_server, "/backtest/result", backtestId=ids["backtestId"])["result"] is None


@pytest.mark.blankly
def test_a_live_model_over_http_runs_logs_is_replaced_and_killed(local_server: ServerHandle,
                                                                 tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "tick.zip", TICKER, prices=False)
    first = upload(local_server, "/model/deploy", zip_path, plan="nano", name="ticker", createNew="true")
    model_id = first["modelId"]
    running = wait_for(lambda: (d := deployment(local_server, model_id))["state"] == "running" and d,
                       "the model to run")
    assert running["versionId"] == first["versionId"]
    logs = wait_for(lambda: (l := get(local_server, "/model/logs", modelId=model_id))["text"].count("tick") >= 2
                    and l, "the log to show ticks")
    more = wait_for(lambda: (l := get(local_server, "/model/logs", modelId=model_id, offset=logs["offset"]))["text"]
                    and l, "the log to grow past the first offset")
    assert "tick" in more["text"] and more["offset"] > logs["offset"]
    old_pids = run_processes(local_server.data_dir)
    assert len(old_pids) == 1

    second = upload(local_server, "/model/deploy", zip_path, plan="nano", modelId=model_id)
    assert second["versionId"] != first["versionId"]
    wait_for(lambda: (d := deployment(local_server, model_id))["state"] == "running"
             and d["versionId"] == second["versionId"], "the new version to run")
    new_pids = wait_for(lambda: run_processes(local_server.data_dir), "the new process")
    assert new_pids != old_pids and all(gone(p) for p in old_pids)

    killed = local_server.request("POST", "/model/kill", data={"modelId": model_id})
    assert killed.status_code == 200, killed.text
    assert killed.json()["state"] == "stopped"
    assert deployment(local_server, model_id)["state"] == "stopped"
    assert all(gone(p) for p in new_pids) and run_processes(local_server.data_dir) == []


@pytest.mark.blankly
def test_after_a_server_crash_live_models_run_again_and_nothing_is_orphaned(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(tmp_path / "data")
    tick = model_zip(tmp_path / "tick.zip", TICKER, prices=False)
    sleeper = model_zip(tmp_path / "sleep.zip", "import time\nprint('up', flush=True)\ntime.sleep(600)\n",
                        prices=False)
    live = upload(server, "/model/deploy", tick, plan="nano", name="ticker", createNew="true")
    wait_for(lambda: deployment(server, live["modelId"])["state"] == "running", "the model to run")
    bt = upload(server, "/model/backtest", sleeper, plan="small", name="sleeper", createNew="true",
                backtestArgs="{}")
    wait_for(lambda: "up" in get(server, "/backtest/logs", backtestId=bt["backtestId"])["text"],
             "the backtest to start")
    before = run_processes(server.data_dir)
    assert len(before) == 2

    server.kill()  # SIGKILL: no cleanup at all
    # Each run's sandbox dies with the server that started it: nothing is left to orphan.
    wait_for(lambda: all(gone(p) for p in before), "the runs to end with their server", 30)
    server.start()

    status = get(server, "/backtest/status", backtestId=bt["backtestId"])
    assert status["status"] == "failed" and "server" in status["error"]
    again = wait_for(lambda: (d := deployment(server, live["modelId"]))["state"] == "running" and d,
                     "the live model to run again")
    assert all(gone(p) for p in before)
    after = run_processes(server.data_dir)
    assert len(after) == 1 and after[0] == again.get("pid", after[0]) and after[0] not in before
    assert psutil.Process(after[0]).is_running()
