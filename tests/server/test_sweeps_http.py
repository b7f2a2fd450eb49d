"""Sweeps and backtest parameters over HTTP: the real server, real sandboxes, real Blankly for the slow ones."""
from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.fixtures_notebooks import PRICES_CSV, RSI_BACKTEST_ARGS, RSI_ENTRY, RSI_IMPORTS, RSI_LOGIC, RSI_SETUP
from tests.fixtures_notebooks import write_notebook
from tests.fixtures_server import ServerHandle, snapshot, wait_for, write_model_zip
from tests.server.runs import run_processes

# A model that prints the parameters it was given (and produces no Blankly result).
ECHO = ("import base64, json, os\n"
        "print('given', json.loads(base64.b64decode(os.environ.get('BLANKLY_PARAMETERS', '')) or '{}'), flush=True)\n")
PARAMETERS = {"low": 30, "high": 70}
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One server for the module (2 backtest workers), stopped after it."""
    root = tmp_path_factory.mktemp("sweeps")
    handle = ServerHandle(root / "data", root / "server.log", args=["--max-workers", "2"])
    handle.start()
    yield handle
    handle.close()
    assert run_processes(root) == [], "the server left runs behind"


def _ok(answer: requests.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def _refused(answer: requests.Response, status: int, message: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert message in error, error
    return error


def _upload(server: ServerHandle, zip_path: Path, route: str, user: str = "alice", **fields: Any):
    form = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in fields.items()}
    with open(zip_path, "rb") as fh:
        return server.request("POST", route, user=user, files={"model": ("model.zip", fh, "application/zip")},
                              data=form)


def _stored(server: ServerHandle) -> Any:
    """What the data dir holds, once alice exists (her first sign-in makes her user and project)
    and the backtests of the tests before have ended (their records change until then)."""
    server.id_token("alice")
    wait_for(lambda: _unfinished(server) == 0, "the earlier tests' backtests to end", timeout=120)
    return snapshot(server.data_dir)


def _unfinished(server: ServerHandle) -> int:
    conn = sqlite3.connect(f"file:{server.data_dir / 'blankly.db'}?mode=ro", uri=True, timeout=15)
    try:
        return conn.execute("SELECT COUNT(*) FROM backtests WHERE status IN ('queued', 'building', 'running')"
                            ).fetchone()[0]
    finally:
        conn.close()


def _echo_zip(tmp_path: Path, parameters: Any = PARAMETERS) -> Path:
    manifest = {"parameters": parameters} if parameters is not None else {}
    return write_model_zip(tmp_path / "echo.zip", manifest=manifest, files={"bot.py": ECHO})


def _sweep_done(server: ServerHandle, sweep_id: str, user: str = "alice") -> dict:
    def check() -> Any:
        status = _ok(server.request("GET", "/sweep/status", user=user, params={"sweepId": sweep_id}))
        return status if status["status"] in TERMINAL else None

    return wait_for(check, f"sweep {sweep_id} to finish", timeout=400)


# ---------------------------------------------------------------- parameters of one backtest


def test_a_backtests_parameters_reach_the_run_and_come_back_with_it(server, tmp_path):
    answer = _ok(_upload(server, _echo_zip(tmp_path), "/model/backtest", name="echo", parameters={"low": 25}))
    backtest_id = answer["backtestId"]

    def ended() -> Any:
        status = _ok(server.request("GET", "/backtest/status", params={"backtestId": backtest_id}))
        return status if status["status"] in TERMINAL else None

    status = wait_for(ended, "the backtest to end")
    assert status["parameters"] == {"low": 25} and status["sweepId"] is None
    log = _ok(server.request("GET", "/backtest/logs", params={"backtestId": backtest_id}))["text"]
    assert "given {'low': 25}" in log
    listed = _ok(server.request("GET", "/model/backtests", params={"modelId": answer["modelId"]}))
    assert listed[0]["parameters"] == {"low": 25}
    # a stored version, through the JSON route: parameters is an object there
    again = _ok(server.request("POST", "/model/backtestUploadedModel", json={
        "modelId": answer["modelId"], "backtestArgs": {"to": "1y"}, "parameters": {"high": 80}}))
    status = _ok(server.request("GET", "/backtest/result", params={"backtestId": again["backtestId"]}))
    assert status["parameters"] == {"high": 80}


def test_parameters_naming_what_the_parameters_cell_does_not_assign_store_nothing(server, tmp_path):
    before = _stored(server)
    _refused(_upload(server, _echo_zip(tmp_path), "/model/backtest", parameters={"lowx": 1}), 400,
             "parameters: the parameters cell does not assign 'lowx' (it assigns low, high)")
    _refused(_upload(server, _echo_zip(tmp_path, None), "/model/backtest", parameters={"low": 1}), 400,
             "parameters: this version has no parameters cell")
    _refused(_upload(server, _echo_zip(tmp_path), "/model/backtest", parameters="[1]"), 400,
             "parameters must be a JSON object of parameter values")
    assert snapshot(server.data_dir).diff(before) == {}


# ---------------------------------------------------------------- sweeps: what is refused


@pytest.mark.parametrize("fields, message", [
    ({"grid": {"lowx": [1, 2]}}, "grid: the parameters cell does not assign 'lowx' (it assigns low, high)"),
    ({"grid": {"low": []}}, "parameter low has no values to sweep over"),
    ({"grid": {"low": list(range(40)), "high": list(range(26))}}, "the sweep has 1,040 points (40 low x 26 high)"),
    ({"grid": {"low": [1]}, "objective": {"metric": "Sharpe", "goal": "maximize"}}, "unknown metric 'Sharpe'"),
    ({"grid": {"low": [1]}, "objective": {"metric": "Sharpe Ratio", "goal": "best"}}, "an objective is 'maximize'"),
    ({"grid": {"low": [1]}, "constraints": ["Max Drawdown (%) below 25"]}, "does not read METRIC OP NUMBER"),
    ({"grid": {"low": [1]}, "parameters": {"low": 2}}, "'low' is both swept (grid) and fixed (parameters)"),
    ({"grid": "low=1,2"}, "grid is not valid JSON"),
    ({}, "missing required field 'grid'"),
])
def test_a_bad_sweep_is_refused_in_one_line_and_stores_nothing(server, tmp_path, fields, message):
    before = _stored(server)
    error = _refused(_upload(server, _echo_zip(tmp_path), "/sweep/create", name="bad", **fields), 400, message)
    assert "\n" not in error
    assert snapshot(server.data_dir).diff(before) == {}


def test_a_sweep_of_a_stored_version_is_checked_against_its_parameters_cell(server, tmp_path):
    stored = _ok(_upload(server, _echo_zip(tmp_path, None), "/model/upload", name="plain"))
    before = _stored(server)
    _refused(server.request("POST", "/sweep/create", json={"modelId": stored["modelId"], "grid": {"low": [1]}}),
             400, "grid: this version has no parameters cell")
    assert snapshot(server.data_dir).diff(before) == {}


# ---------------------------------------------------------------- sweeps: the routes


def test_a_sweep_runs_a_backtest_per_point_owned_like_every_run(server, tmp_path):
    answer = _ok(_upload(server, _echo_zip(tmp_path), "/sweep/create", name="echo-sweep",
                         grid={"low": [20, 25], "high": [65, 70, 75]}, parameters={},
                         objective={"metric": "Max Drawdown (%)", "goal": "minimize"},
                         constraints=["Sharpe Ratio > 0"], backtestArgs={"to": "1y"}))
    sweep_id, model_id = answer["sweepId"], answer["modelId"]
    assert answer["points"] == 6 and len(answer["backtestIds"]) == 6
    first = _ok(server.request("GET", "/sweep/status", params={"sweepId": sweep_id}))
    assert first["points"] == 6 and len(first["states"]) == 6 and first["finished"] < 6

    # a long poll answers once another point has ended
    seen = first["finished"]
    waited = _ok(server.request("GET", "/sweep/status", params={"sweepId": sweep_id, "wait": 30, "seen": seen}))
    assert waited["finished"] > seen or waited["status"] in TERMINAL
    # the answer that counts the last point's end is the sweep's end: a client needs no further poll
    status = waited
    while status["finished"] < 6:
        status = _ok(server.request("GET", "/sweep/status",
                                    params={"sweepId": sweep_id, "wait": 30, "seen": status["finished"]}))
    assert status["status"] == "failed" and status["counts"] == {"failed": 6}
    final = _sweep_done(server, sweep_id)
    # the echo model reports no Blankly result: every point failed, the sweep says why
    assert final["status"] == "failed" and final["counts"] == {"failed": 6}
    assert final["error"] == "no point completed: every one failed (each point's error says why)"
    assert final["best"] is None and final["bestReason"] == "no point has completed"
    assert final["objective"] == {"metric": "Max Drawdown (%)", "goal": "minimize"}
    assert final["constraints"] == ["Sharpe Ratio > 0"]

    table = _ok(server.request("GET", "/sweep/table", params={"sweepId": sweep_id}))
    assert table["parameterNames"] == ["low", "high"] and "Sharpe Ratio" in table["metricNames"]
    assert [r["parameters"] for r in table["rows"]] == [
        {"low": 20, "high": 65}, {"low": 20, "high": 70}, {"low": 20, "high": 75},
        {"low": 25, "high": 65}, {"low": 25, "high": 70}, {"low": 25, "high": 75}]
    assert [r["backtestId"] for r in table["rows"]] == answer["backtestIds"]
    # each point is a backtest: listed with the model's, with its own log
    listed = {b["backtestId"]: b for b in _ok(server.request("GET", "/model/backtests", params={"modelId": model_id}))}
    point = listed[answer["backtestIds"][4]]
    assert point["sweepId"] == sweep_id and point["parameters"] == {"low": 25, "high": 70}
    log = _ok(server.request("GET", "/backtest/logs", params={"backtestId": point["backtestId"]}))["text"]
    assert "given {'low': 25, 'high': 70}" in log and f"a point of sweep {sweep_id}" in log
    swept = _ok(server.request("GET", "/sweep/list", params={"modelId": model_id}))
    assert [s["sweepId"] for s in swept] == [sweep_id] and swept[0]["counts"] == {"failed": 6}
    assert sweep_id in [s["sweepId"] for s in _ok(server.request("GET", "/sweep/list"))]

    # another user's sweep is a 404, as a missing one
    for method, route, fields in (("GET", "/sweep/status", {"sweepId": sweep_id}),
                                  ("GET", "/sweep/table", {"sweepId": sweep_id}),
                                  ("POST", "/sweep/cancel", {"sweepId": sweep_id}),
                                  ("GET", "/backtest/result", {"backtestId": point["backtestId"]})):
        kwargs = {"params": fields} if method == "GET" else {"data": fields}
        _refused(server.request(method, route, user="bob", **kwargs), 404, "not found")
    _refused(server.request("GET", "/sweep/list", user="bob", params={"modelId": model_id}), 404, "not found")
    assert _ok(server.request("GET", "/sweep/list", user="bob")) == []
    _refused(server.request("POST", "/sweep/create", user="bob", json={"modelId": model_id, "grid": {"low": [1]}}),
             404, "not found")
    _refused(server.request("GET", "/sweep/status", params={"sweepId": sweep_id, "wait": "forever", "seen": 0}),
             400, "wait is seconds to wait, from 0 to 30")


# ---------------------------------------------------------------- real Blankly sweeps

SWEPT_LOGIC = RSI_LOGIC.replace("rsi[-1] < 30", "rsi[-1] < low").replace("rsi[-1] > 70", "rsi[-1] > high")
TRAPS = "#| blankly\nimport time\ntime.sleep(delay)\nif boom:\n    raise RuntimeError(f'no strategy at low={low}')\n"


def rsi_sweep_zip(folder: Path) -> Path:
    """The RSI notebook with a parameters cell (low, high, and two traps), built by the real exporter."""
    from blankly_magics.export import build_bundle

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRICES_CSV, folder / PRICES_CSV.name)
    nb = write_notebook(folder / "rsi.ipynb", [
        RSI_IMPORTS, "#| blankly: parameters\nlow = 30\nhigh = 70\ndelay = 0\nboom = False\n", TRAPS,
        SWEPT_LOGIC, RSI_SETUP])
    return build_bundle(nb, entry=RSI_ENTRY).write_zip(folder / "rsi.zip")


@pytest.mark.slow
@pytest.mark.blankly
def test_a_point_that_raises_fails_and_the_others_complete(server, tmp_path):
    answer = _ok(_upload(server, rsi_sweep_zip(tmp_path), "/sweep/create", name="rsi-boom",
                         grid={"boom": [False, True], "low": [25, 30]}, backtestArgs=RSI_BACKTEST_ARGS))
    final = _sweep_done(server, answer["sweepId"])
    assert final["status"] == "completed", final
    assert final["states"] == ["completed", "completed", "failed", "failed"]
    table = _ok(server.request("GET", "/sweep/table", params={"sweepId": answer["sweepId"]}))
    assert all(r["metrics"]["Sharpe Ratio"] is not None for r in table["rows"][:2])
    assert "RuntimeError: no strategy at low=25" in table["rows"][2]["error"]
    assert final["best"]["backtestId"] in answer["backtestIds"][:2]


@pytest.mark.slow
@pytest.mark.blankly
def test_cancelling_a_sweep_midway_keeps_finished_points_and_leaves_no_process(server, tmp_path):
    answer = _ok(_upload(server, rsi_sweep_zip(tmp_path), "/sweep/create", name="rsi-cancel",
                         grid={"delay": [0, 0, 300, 300, 0]}, backtestArgs=RSI_BACKTEST_ARGS))
    sweep_id, ids = answer["sweepId"], answer["backtestIds"]

    def two_done_two_running() -> Any:
        status = _ok(server.request("GET", "/sweep/status", params={"sweepId": sweep_id}))
        return status["states"][:4] == ["completed", "completed", "running", "running"]

    wait_for(two_done_two_running, "two points to complete and two to run", timeout=300)
    _refused(server.request("POST", "/backtest/cancel", data={"backtestId": ids[2]}), 409,
             f"is a running point of sweep {sweep_id}: it ends by itself, or cancel the whole sweep")
    _ok(server.request("POST", "/sweep/cancel", data={"sweepId": sweep_id}))
    final = _sweep_done(server, sweep_id)
    assert final["status"] == "cancelled"
    assert final["states"] == ["completed", "completed", "cancelled", "cancelled", "cancelled"]
    for backtest_id in ids[:2]:  # the finished points keep their results
        result = _ok(server.request("GET", "/backtest/result", params={"backtestId": backtest_id}))["result"]
        assert result["metrics"]["Sharpe Ratio"] is not None and result["trades"]
    wait_for(lambda: run_processes(server.data_dir) == [], "the cancelled points' processes to end", timeout=60)


def encoded(parameters: dict) -> str:
    return base64.b64encode(json.dumps(parameters).encode()).decode()


def test_the_parameters_encoding_is_the_platforms_backtesting_args_encoding():
    """BLANKLY_PARAMETERS and BACKTESTING_ARGS: base64 of a JSON object, read the same way."""
    from blankly_magics.server.runner.backtests import BacktestJob, backtest_request

    job = BacktestJob("b1", "m1", "v1", "p1", Path("/nonexistent.zip"), "", {"to": "1y"}, parameters={"low": 25})
    env = backtest_request(job, Path("/tmp/b1"), network=False).env
    assert env["BLANKLY_PARAMETERS"] == encoded({"low": 25})
    assert env["BACKTESTING_ARGS"] == encoded({"to": "1y"})
    plain = backtest_request(BacktestJob("b2", "m1", "v1", "p1", Path("/x.zip"), "", {}), Path("/tmp/b2"), False)
    assert "BLANKLY_PARAMETERS" not in plain.env  # no overrides: the script keeps its defaults
    assert time.time() > 0
