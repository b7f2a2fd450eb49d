"""The runner, driven directly with real model zips and real child processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Optional

import psutil
import pytest

from blankly_magics.server.runner import (
    BacktestJob,
    LiveJob,
    LocalExecutor,
    LogSink,
    Runner,
    RunLimits,
    failure_reason,
)
from blankly_magics.server.runner.sandbox import find_bwrap
from tests.fixtures_notebooks import RSI_BACKTEST_ARGS
from tests.fixtures_server import wait_for
from tests.server.runs import TICKER, Recorder, gone, model_zip, rsi_script, run_directly, run_processes


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def runner(tmp_path: Path, recorder: Recorder):
    r = Runner(tmp_path / "data", recorder.on_backtest, recorder.on_live, max_workers=2,
               restart_backoff=0.2, max_restarts=2, grace=2.0)
    r.start()
    yield r
    r.shutdown()
    assert run_processes(tmp_path) == [], "the runner left child processes behind"


def job(tmp_path: Path, backtest_id: str, zip_path: Path, args: Optional[dict] = None,
        limits: RunLimits = RunLimits(), python_version: str = "") -> BacktestJob:
    return BacktestJob(backtest_id, "model1", "v1", "proj1", zip_path, python_version,
                       dict(RSI_BACKTEST_ARGS if args is None else args), limits=limits)


# ---------------------------------------------------------------- backtests


@pytest.mark.slow
def test_rsi_backtest_equals_a_direct_run(runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "rsi.zip", rsi_script())
    runner.submit_backtest(job(tmp_path, "bt-rsi", zip_path))
    final = recorder.wait_backtest("bt-rsi")
    assert recorder.backtests["bt-rsi"][0] == {"status": "queued"}
    assert final["status"] == "completed", (final.get("error"), runner.backtest_log("bt-rsi").read_text())
    assert final["exit_code"] == 0 and final["error"] is None
    assert final["started_at"] <= final["ended_at"]
    result = final["result"]
    direct = run_directly(tmp_path / "direct", RSI_BACKTEST_ARGS)
    assert result["metrics"] == direct["metrics"]
    assert "Sharpe Ratio" in result["metrics"]
    assert len(result["trades"]) == direct["trades"] > 0
    assert result["initial_account_value"] == 10000
    assert result["account_values"][-1]["value"] == result["final_account_value"]
    assert result["symbols"] == ["GOOG-USD"] and result["quote_asset"] == "USD"
    assert result["exchange"] == "keyless"
    json.dumps(result, allow_nan=False)  # what the server stores and serves
    log = runner.backtest_log("bt-rsi").read_text()
    assert "Blankly Metrics" in log
    # Headless although the uploaded backtest.json asked for the GUI; the model copy is cleaned up.
    assert not (runner.backtest_log("bt-rsi").parent / "model").exists()


@pytest.mark.slow
def test_backtest_args_change_the_outcome(runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "rsi.zip", rsi_script())
    small = {**RSI_BACKTEST_ARGS, "initial_values": {"USD": 2500}}
    short = {**RSI_BACKTEST_ARGS, "end_date": "2011-06-01"}
    for name, args in (("bt-a", RSI_BACKTEST_ARGS), ("bt-b", small), ("bt-c", short)):
        runner.submit_backtest(job(tmp_path, name, zip_path, args))
    a, b, c = (recorder.wait_backtest(n) for n in ("bt-a", "bt-b", "bt-c"))
    assert [x["status"] for x in (a, b, c)] == ["completed"] * 3
    assert b["result"]["initial_account_value"] == 2500
    assert a["result"]["final_account_value"] != b["result"]["final_account_value"]
    assert c["result"]["stop_time"] < a["result"]["stop_time"]
    assert a["result"]["final_account_value"] != c["result"]["final_account_value"]


@pytest.mark.slow
def test_a_script_that_calls_backtest_itself_gets_the_uploaded_args_merged(
    runner: Runner, recorder: Recorder, tmp_path: Path
) -> None:
    own_call = (
        'strategy.backtest(initial_values={"USD": 10000}, start_date="2010-06-01", '
        'end_date="2011-06-01", GUI_output=True)\n'
    )
    zip_path = model_zip(tmp_path / "own.zip", rsi_script(own_call))
    runner.submit_backtest(job(tmp_path, "bt-own", zip_path, {"initial_values": {"USD": 4000}}))
    final = recorder.wait_backtest("bt-own")
    assert final["status"] == "completed", final.get("error")
    result = final["result"]
    assert result["initial_account_value"] == 4000  # the uploaded arg won
    assert result["stop_time"] <= time.mktime((2011, 6, 2, 0, 0, 0, 0, 0, -1))  # the script's own end_date kept


@pytest.mark.blankly
def test_a_model_that_raises_fails_with_its_traceback(runner: Runner, recorder: Recorder,
                                                      tmp_path: Path) -> None:
    script = "def setup():\n    raise ValueError('no prices for GOOG-USD')\n\nsetup()\n"
    zip_path = model_zip(tmp_path / "raise.zip", script, prices=False)
    runner.submit_backtest(job(tmp_path, "bt-raise", zip_path))
    final = recorder.wait_backtest("bt-raise")
    assert final["status"] == "failed"
    assert final["exit_code"] == 1
    assert final["error"] == "ValueError: no prices for GOOG-USD"
    assert final.get("result") is None
    log = runner.backtest_log("bt-raise").read_text()
    assert "Traceback (most recent call last)" in log and "in setup" in log


@pytest.mark.blankly
def test_a_script_without_a_backtest_fails_with_no_result(runner: Runner, recorder: Recorder,
                                                          tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "quiet.zip", "print('nothing to see')\n", prices=False)
    runner.submit_backtest(job(tmp_path, "bt-quiet", zip_path))
    final = recorder.wait_backtest("bt-quiet")
    assert final["status"] == "failed" and final["exit_code"] == 0
    assert final["error"].startswith("produced no backtest result")
    assert "nothing to see" in runner.backtest_log("bt-quiet").read_text()


@pytest.mark.blankly
def test_the_model_gets_the_platform_environment_and_nothing_of_the_servers(runner: Runner, recorder: Recorder,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SECRET_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("HARMLESS_SETTING", "kept")
    script = (
        "import base64, json, os, sys\n"
        "names = ['PROJECT_ID', 'MODEL_ID', 'VERSION_ID', 'UID', 'TYPE', 'BACKTESTING', 'BACKTESTING_ID',\n"
        "         'MPLBACKEND', 'PYTHONUNBUFFERED', 'HARMLESS_SETTING', 'MY_SECRET_TOKEN']\n"
        "out = {n: os.environ.get(n) for n in names}\n"
        "out['args'] = json.loads(base64.b64decode(os.environ['BACKTESTING_ARGS']))\n"
        "out['first_path'] = os.environ['PYTHONPATH'].split(os.pathsep)[0]\n"
        "out['cwd'] = os.getcwd()\n"
        "import blankly_external\n"
        "out['hook'] = blankly_external.__file__\n"
        "json.dump(out, open(os.path.join(os.environ['BLANKLY_MAGICS_REPORT_DIR'], 'env.json'), 'w'))\n"
    )
    zip_path = model_zip(tmp_path / "env.zip", script, prices=False, files={"sub/keep.txt": "x"},
                         manifest={"working_directory": "./sub"})
    runner.submit_backtest(job(tmp_path, "bt-env", zip_path, {"to": "1y"}))
    recorder.wait_backtest("bt-env")
    seen = json.loads((runner.backtest_log("bt-env").parent / "report" / "env.json").read_text())
    assert seen["PROJECT_ID"] == "proj1" and seen["MODEL_ID"] == "model1" and seen["VERSION_ID"] == "v1"
    assert seen["UID"] == "proj1" and seen["TYPE"] == "STRATEGY"
    assert seen["BACKTESTING"] == "1" and seen["BACKTESTING_ID"] == "bt-env"
    assert seen["args"] == {"to": "1y"}
    assert seen["MPLBACKEND"] == "Agg" and seen["PYTHONUNBUFFERED"] == "1"
    # The server's environment is never copied: harmless-looking or not, its variables stay out.
    assert seen["HARMLESS_SETTING"] is None and seen["MY_SECRET_TOKEN"] is None
    assert seen["first_path"] == "/blankly/hook"
    assert Path(seen["hook"]).parent == Path(seen["first_path"])
    assert seen["cwd"] == "/blankly/model/sub"


@pytest.mark.blankly
def test_a_model_past_the_time_limit_is_stopped(runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    script = "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
    zip_path = model_zip(tmp_path / "sleep.zip", script, prices=False)
    runner.submit_backtest(job(tmp_path, "bt-slow", zip_path, limits=RunLimits(timeout=1.5)))
    final = recorder.wait_backtest("bt-slow")
    assert final["status"] == "failed"
    assert final["error"] == "stopped: exceeded the plan's time limit of 1.5 s"
    assert "time limit" in runner.backtest_log("bt-slow").read_text()
    assert run_processes(tmp_path) == []


@pytest.mark.blankly
def test_a_model_past_the_memory_cap_is_stopped(runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    script = (
        "import time\nhog = []\n"
        "for _ in range(400):\n"
        "    hog.append(bytearray(8 * 1024 * 1024))\n"
        "    time.sleep(0.02)\n"
        "print('survived')\n"
    )
    zip_path = model_zip(tmp_path / "hog.zip", script, prices=False)
    runner.submit_backtest(job(tmp_path, "bt-hog", zip_path, limits=RunLimits(ram=120, timeout=120)))
    final = recorder.wait_backtest("bt-hog")
    assert final["status"] == "failed"
    assert final["error"].startswith("stopped: exceeded the plan's memory limit of 120 MB")
    assert "survived" not in runner.backtest_log("bt-hog").read_text()


@pytest.mark.blankly
def test_cancel_stops_a_running_backtest_and_skips_a_queued_one(tmp_path: Path, recorder: Recorder) -> None:
    r = Runner(tmp_path / "data", recorder.on_backtest, recorder.on_live, max_workers=1, grace=2.0)
    r.start()
    try:
        script = "import os, time\nprint('started', flush=True)\ntime.sleep(120)\n"
        zip_path = model_zip(tmp_path / "sleep.zip", script, prices=False)
        r.submit_backtest(job(tmp_path, "bt-1", zip_path))
        r.submit_backtest(job(tmp_path, "bt-2", zip_path))
        recorder.wait(lambda: "started" in _read(r.backtest_log("bt-1")))
        # One worker: the second waits in the queue while the first runs.
        assert recorder.backtest("bt-2")["status"] == "queued"
        assert r.cancel_backtest("bt-2") is True
        assert r.cancel_backtest("bt-1") is True
        first, second = recorder.wait_backtest("bt-1"), recorder.wait_backtest("bt-2")
        assert first["status"] == "cancelled" and first["error"] == "cancelled by the user"
        assert second["status"] == "cancelled"
        assert all(f.get("status") != "running" for f in recorder.backtests["bt-2"])
        assert r.cancel_backtest("bt-1") is False  # finished: nothing to cancel
        assert r.cancel_backtest("no-such-backtest") is False
    finally:
        r.shutdown()
    assert run_processes(tmp_path) == []


class SeesRunning(Recorder):
    """A Recorder that looks, at the moment a backtest is reported running, at the pid record of its
    run: what anyone reading the status then (a user, an operator, a test) finds of its process."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.pids = data_dir / "runs" / "pids"
        self.at_running: dict[str, Optional[dict]] = {}

    def on_backtest(self, backtest_id: str, fields: dict) -> None:
        if fields.get("status") == "running":
            try:
                record = json.loads((self.pids / f"backtest-{backtest_id}.json").read_text())
            except FileNotFoundError:
                record = None
            self.at_running[backtest_id] = record if record is None or gone(record["pid"]) else {
                **record, "alive": True}
        super().on_backtest(backtest_id, fields)


SLEEPS = "import time\nprint('started', flush=True)\ntime.sleep(120)\n"


def _running_then_cancelled(r: Runner, seen: SeesRunning, tmp_path: Path, backtest_id: str) -> dict:
    r.submit_backtest(job(tmp_path, backtest_id, model_zip(tmp_path / f"{backtest_id}.zip", SLEEPS, prices=False)))
    seen.wait(lambda: seen.backtest(backtest_id).get("status") == "running")
    assert r.cancel_backtest(backtest_id) is True
    assert seen.wait_backtest(backtest_id)["status"] == "cancelled"
    return seen.at_running[backtest_id]


@pytest.mark.blankly
def test_a_backtest_is_running_only_once_its_process_is_started_and_recorded(tmp_path: Path) -> None:
    seen = SeesRunning(tmp_path / "data")
    r = Runner(tmp_path / "data", seen.on_backtest, seen.on_live, max_workers=1, grace=2.0,
               executor=LocalExecutor(tmp_path / "data", find_bwrap(), grace=2.0, warm_workers=0))
    r.start()
    try:
        record = _running_then_cancelled(r, seen, tmp_path, "bt-cold")
    finally:
        r.shutdown()
    assert record is not None and record["kind"] == "backtest" and record["alive"], record
    assert [f["status"] for f in seen.backtests["bt-cold"] if "status" in f] == ["queued", "running", "cancelled"]
    assert run_processes(tmp_path) == []


@pytest.mark.slow  # a warm worker imports numpy, pandas and Blankly first
@pytest.mark.blankly
def test_a_warm_started_backtest_is_running_only_once_the_worker_holds_its_run(tmp_path: Path) -> None:
    seen = SeesRunning(tmp_path / "data")
    executor = LocalExecutor(tmp_path / "data", find_bwrap(), grace=2.0, warm_workers=1)
    r = Runner(tmp_path / "data", seen.on_backtest, seen.on_live, max_workers=1, grace=2.0, executor=executor)
    r.start()
    try:
        _running_then_cancelled(r, seen, tmp_path, "bt-first")  # the pool fills from the first backtest on
        wait_for(lambda: executor.pool.idle(), "an idle warm worker", 120)
        worker = executor.pool.idle()[0].sandbox.child.pid
        record = _running_then_cancelled(r, seen, tmp_path, "bt-warm")
    finally:
        r.shutdown()
    # The run is the worker's process, recorded as the backtest's (no longer an idle worker's).
    assert record is not None and record["kind"] == "backtest" and record["alive"], record
    assert record["pid"] == worker
    assert run_processes(tmp_path) == []


@pytest.mark.blankly
def test_a_python_this_machine_lacks_fails_before_running(runner: Runner, recorder: Recorder,
                                                          tmp_path: Path) -> None:
    script = "open('ran.marker', 'w').write('ran')\n"
    zip_path = model_zip(tmp_path / "py.zip", script, prices=False)
    runner.submit_backtest(job(tmp_path, "bt-py", zip_path, python_version="3.99"))
    final = recorder.wait_backtest("bt-py")
    assert final["status"] == "failed"
    assert final["error"].startswith("python 3.99 is not available on this machine")


@pytest.mark.slow
def test_requirements_pip_cannot_satisfy_fail_and_the_script_never_starts(
    runner: Runner, recorder: Recorder, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.marker"
    script = f"open({str(marker)!r}, 'w').write('ran')\n"
    zip_path = model_zip(tmp_path / "pins.zip", script, prices=False,
                         requirements="six==1.16.0\nsix==1.15.0\n")
    runner.submit_backtest(job(tmp_path, "bt-pip", zip_path))
    final = recorder.wait_backtest("bt-pip", timeout=600)
    assert final["status"] == "failed"
    assert final["error"].startswith("pip install -r requirements.txt failed")
    assert "six" in final["error"] and "ResolutionImpossible" in final["error"]
    assert not marker.exists()
    assert "ResolutionImpossible" in runner.backtest_log("bt-pip").read_text()
    # The failed build left no half environment behind to be mistaken for a ready one.
    envs_dir = tmp_path / "data" / "envs"
    assert not envs_dir.exists() or list(envs_dir.iterdir()) == []


@pytest.mark.blankly
def test_a_bad_backtest_id_is_refused(runner: Runner, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "x.zip", "print(1)\n", prices=False)
    with pytest.raises(ValueError, match="cannot name a run directory"):
        runner.submit_backtest(job(tmp_path, "../escape", zip_path))


# ---------------------------------------------------------------- live models

def live_job(zip_path: Path, model_id: str = "live1", version_id: str = "v1", **kw: Any) -> LiveJob:
    return LiveJob(model_id, version_id, "proj1", zip_path, "", **kw)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.blankly
def test_a_live_model_runs_logs_and_is_killed(runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "tick.zip", TICKER, prices=False)
    runner.deploy(live_job(zip_path))
    state = recorder.wait_live("live1", lambda s: s.get("state") == "running")
    pid = state["pid"]
    assert psutil.Process(pid).is_running()
    log = runner.live_log("live1")
    recorder.wait(lambda: "tick 2" in _read(log))
    size = log.stat().st_size
    recorder.wait(lambda: "tick 4" in _read(log))
    assert log.stat().st_size > size  # the log grows while it runs
    text = log.read_text()
    assert "model live1 backtesting None" in text
    status = runner.live_status("live1")
    assert status["state"] == "running" and status["version_id"] == "v1" and "tick" in status["log_tail"]
    assert runner.kill("live1") is True
    assert recorder.live_state("live1")["state"] == "stopped"
    assert gone(pid)
    assert run_processes(tmp_path) == []
    assert runner.kill("live1") is False


PRIVATE_MODEL = (
    "import os, subprocess, time\n"
    "rows = open('data/prices.csv').read().splitlines()\n"  # its own unpacked files, read back
    "ran = subprocess.run(['./tool.sh'], capture_output=True, text=True).stdout.strip()\n"
    "open('written_by_model.txt', 'w').write('x')\n"
    "open(os.path.join(os.environ['BLANKLY_MAGICS_REPORT_DIR'], 'note.json'), 'w').write('{}')\n"
    "print('ready', len(rows), ran, flush=True)\n"
    "time.sleep(600)\n"
)


def _modes(root: Path) -> dict[str, str]:
    """Every folder (name ending in /) and file under ``root`` with its permission bits,
    e.g. {"live/m/output.log": "0o600", "live/m/model/": "0o700"}."""
    return {(p.relative_to(root).as_posix() or ".") + ("/" if p.is_dir() and p != root else ""):
            oct(p.lstat().st_mode & 0o7777) for p in [root, *root.rglob("*")]}


# The sandbox's account files (one account, no secret) are what every run's sandbox reads.
ACCOUNT_FILES = {"sandbox/passwd": "0o644", "sandbox/group": "0o644"}


def _mount_point(name: str) -> bool:
    """A folder bubblewrap made in a run's /tmp to show a Python or the package that lives under
    /tmp (a checkout or a venv there): empty, and the run only sees what is mounted on it."""
    import blankly_magics

    inside = name.split("/tmp/", 1)[1] if "/tmp/" in name else None
    shown = (Path(blankly_magics.__file__).resolve().parent, Path(sys.prefix), Path(sys.base_prefix))
    return inside is not None and any(f"{p.relative_to('/tmp')}/".startswith(inside)
                                      for p in shown if p.is_relative_to("/tmp"))


@pytest.mark.blankly
def test_everything_the_runner_writes_is_private_and_the_model_still_reads_and_runs_its_copy(
    recorder: Recorder, tmp_path: Path
) -> None:
    zip_path = model_zip(tmp_path / "private.zip", PRIVATE_MODEL, prices=False, files={"data/prices.csv": "a\nb\n"})
    with zipfile.ZipFile(zip_path, "a") as zf:  # an executable entry, as zip -X keeps it: rwxr-xr-x
        tool = zipfile.ZipInfo("model/tool.sh")
        tool.external_attr = 0o100755 << 16
        zf.writestr(tool, "#!/bin/sh\necho tool-ran\n")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)  # the store makes it 0700; the runner makes what is inside
    old_umask = os.umask(0o022)  # the usual one: the runner must not rely on the server's umask
    try:
        runner = Runner(data, recorder.on_backtest, recorder.on_live, max_workers=1, grace=2.0)
        runner.start()
        try:
            runner.deploy(live_job(zip_path, model_id="priv"))
            recorder.wait(lambda: "ready 2 tool-ran" in _read(runner.live_log("priv")))
            live = _modes(data / "runs")  # while it runs: pid file and unpacked model there
            runner.submit_backtest(job(tmp_path, "bt-priv", model_zip(tmp_path / "bt.zip", "print('hi')\n",
                                                                      prices=False), {"to": "1y"}))
            assert recorder.wait_backtest("bt-priv")["status"] == "failed"  # no Blankly backtest in it
            runner.kill("priv")
        finally:
            runner.shutdown()
    finally:
        os.umask(old_umask)
    assert live["pids/live-priv.json"] == "0o600"
    assert live["live/priv/model/tool.sh"] == "0o700"  # the owner may still run it (it did, above)
    for name in ("output.log", "report/note.json", "model/bot.py", "model/data/prices.csv",
                 "model/written_by_model.txt"):
        assert live[f"live/priv/{name}"] == "0o600", name
    done = _modes(data / "runs")
    assert done["backtests/bt-priv/output.log"] == "0o600" and "backtests/bt-priv/report/" in done
    assert "live/priv/model/" not in done  # the run's copy went when it stopped; its log stays
    for modes in (live, done):
        loose = {name: mode for name, mode in modes.items() if name not in ACCOUNT_FILES and not _mount_point(name)
                 and mode != ("0o700" if name.endswith("/") or name == "." or name.endswith("tool.sh") else "0o600")}
        assert loose == {}, loose
        assert {name: modes[name] for name in ACCOUNT_FILES} == ACCOUNT_FILES


def test_an_older_runners_open_folders_are_closed_at_start(recorder: Recorder, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for folder in ("runs/backtests", "runs/live", "runs/pids"):
        (data / folder).mkdir(parents=True)
        os.chmod(data / folder, 0o755)
    os.chmod(data / "runs", 0o755)
    runner = Runner(data, recorder.on_backtest, recorder.on_live, max_workers=1)
    runner.start()
    runner.shutdown()
    modes = _modes(data / "runs")
    assert {name: modes.pop(name) for name in ACCOUNT_FILES} == ACCOUNT_FILES
    assert set(modes.values()) == {"0o700"}


@pytest.mark.blankly
def test_a_redeploy_replaces_the_running_process(runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "tick.zip", TICKER, prices=False)
    runner.deploy(live_job(zip_path, version_id="v1"))
    first = recorder.wait_live("live1", lambda s: s.get("state") == "running")["pid"]
    runner.deploy(live_job(zip_path, version_id="v2"))
    second = recorder.wait_live(
        "live1", lambda s: s.get("state") == "running" and s.get("version_id") == "v2")["pid"]
    assert second != first
    assert gone(first)
    assert psutil.Process(second).is_running()
    # The old run never reported after the new one started.
    states = [f.get("state") for f in recorder.live["live1"]]
    assert states == ["starting", "running", "starting", "running"]
    assert len(run_processes(tmp_path)) == 1


@pytest.mark.blankly
def test_a_crashing_model_is_restarted_then_left_crashed(runner: Runner, recorder: Recorder,
                                                         tmp_path: Path) -> None:
    script = "print('starting up')\nraise RuntimeError('exchange keys missing')\n"
    zip_path = model_zip(tmp_path / "crash.zip", script, prices=False)
    runner.deploy(live_job(zip_path, model_id="crashy"))
    final = recorder.wait_live("crashy", lambda s: s.get("state") == "crashed")
    assert final["exit_code"] == 1
    assert final["restarts"] == 2  # the runner fixture allows two restarts
    assert final["error"] == "RuntimeError: exchange keys missing (gave up after 2 restarts)"
    assert final["log_tail"].count("starting up") == 3 and "Traceback" in final["log_tail"]
    pids = [f["pid"] for f in recorder.live["crashy"] if f.get("state") == "running"]
    assert len(set(pids)) == 3


def test_each_start_of_a_live_model_gets_its_secret_files_afresh_and_they_go_when_it_ends(
        runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    script = "print('keys.json holds', open('keys.json').read(), flush=True)\nraise SystemExit(3)\n"
    zip_path = model_zip(tmp_path / "keyed.zip", script, prices=False)
    starts = iter(range(1, 10))
    runner.deploy(live_job(zip_path, model_id="keyed", secrets=lambda: {"keys.json": b"generation %d" % next(starts)}))
    final = recorder.wait_live("keyed", lambda s: s.get("state") == "crashed")
    log = final["log_tail"]
    assert [f"keys.json holds generation {n}" in log for n in (1, 2, 3)] == [True, True, True]  # the restarts too
    assert not list((tmp_path / "data" / "runs" / "live" / "keyed").rglob("keys.json"))


@pytest.mark.slow  # waits for the next minute boundary
def test_a_screener_runs_on_its_schedule(runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    script = "import time\nprint('screened at', time.strftime('%H:%M'), flush=True)\n"
    zip_path = model_zip(tmp_path / "screen.zip", script, prices=False, manifest={"type": "screener"})
    runner.deploy(live_job(zip_path, model_id="scr", model_type="screener", schedule="* * * * *"))
    recorder.wait_live("scr", lambda s: s.get("state") == "running")
    log = runner.live_log("scr")
    recorder.wait(lambda: "screened at" in _read(log), timeout=90)
    state = recorder.wait_live("scr", lambda s: s.get("exit_code") == 0)
    assert state["state"] == "running" and state["pid"] is None and state["error"] is None
    assert runner.kill("scr") is True
    assert recorder.live_state("scr")["state"] == "stopped"


@pytest.mark.blankly
def test_a_screener_with_a_bad_schedule_is_crashed_with_the_reason(
    runner: Runner, recorder: Recorder, tmp_path: Path
) -> None:
    zip_path = model_zip(tmp_path / "screen.zip", "print(1)\n", prices=False, manifest={"type": "screener"})
    runner.deploy(live_job(zip_path, model_id="scr2", model_type="screener", schedule="every monday"))
    final = recorder.wait_live("scr2", lambda s: s.get("state") == "crashed")
    assert "schedule" in final["error"] and "5" in final["error"]


# ---------------------------------------------------------------- restart safety

ORPHAN_MAKER = """
import sys, time
from pathlib import Path
from blankly_magics.server.runner import BacktestJob, LiveJob, LocalExecutor, Runner
from blankly_magics.server.runner.sandbox import find_bwrap
data, live_zip, sleep_zip, confined = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"
r = Runner(data, lambda *a: None, lambda *a: None, max_workers=1,
           executor=LocalExecutor(data, find_bwrap() if confined else None))
r.start()
r.deploy(LiveJob("orphan-live", "v1", "p1", live_zip, ""))
r.submit_backtest(BacktestJob("orphan-bt", "m", "v1", "p1", sleep_zip, "", {}))
while len(list((data / "runs" / "pids").glob("*.json"))) < 2:
    time.sleep(0.1)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.blankly
@pytest.mark.parametrize("confined", [True, False], ids=["confined", "unconfined"])
def test_a_killed_servers_runs_end_and_the_next_runner_closes_them(
    tmp_path: Path, recorder: Recorder, confined: bool
) -> None:
    data = tmp_path / "data"
    live_zip = model_zip(tmp_path / "tick.zip", TICKER, prices=False)
    sleeper = ("import subprocess, sys, time\n"
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
               "time.sleep(600)\n")
    sleep_zip = model_zip(tmp_path / "sleep.zip", sleeper, prices=False)
    script = tmp_path / "orphans.py"
    script.write_text(ORPHAN_MAKER)
    server = subprocess.Popen([sys.executable, str(script), str(data), str(live_zip), str(sleep_zip),
                               "1" if confined else "0"],
                              stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).parents[3]))
    try:
        assert server.stdout.readline().strip() == "ready"
        orphans = run_processes(tmp_path)
        assert len(orphans) >= 2
        server.send_signal(signal.SIGKILL)  # the server dies without cleaning up
        server.wait()
        if confined:  # a sandbox dies with the server that started it
            wait_for(lambda: all(gone(p) for p in orphans), "the sandboxes to end with their server", 30)
        else:
            assert all(not gone(p) for p in orphans)  # its children outlived it
        r = Runner(data, recorder.on_backtest, recorder.on_live, max_workers=1)
        r.start()
        try:
            assert run_processes(tmp_path) == []
            assert all(gone(p) for p in orphans)
            assert recorder.backtest("orphan-bt")["status"] == "failed"
            assert "server stopped" in recorder.backtest("orphan-bt")["error"]
            assert recorder.live_state("orphan-live")["state"] == "stopped"
            assert list((data / "runs" / "pids").glob("*.json")) == []
        finally:
            r.shutdown()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for pid in run_processes(tmp_path):  # never leave a stray behind, even when an assert failed
            psutil.Process(pid).kill()


@pytest.mark.blankly
def test_shutdown_stops_every_child(tmp_path: Path, recorder: Recorder) -> None:
    r = Runner(tmp_path / "data", recorder.on_backtest, recorder.on_live, max_workers=1, grace=1.0)
    r.start()
    live_zip = model_zip(tmp_path / "tick.zip", TICKER, prices=False)
    sleep_zip = model_zip(tmp_path / "sleep.zip", "import time\nprint('up', flush=True)\ntime.sleep(300)\n",
                          prices=False)
    r.deploy(live_job(live_zip))
    r.submit_backtest(job(tmp_path, "bt-run", sleep_zip))
    r.submit_backtest(job(tmp_path, "bt-wait", sleep_zip))
    recorder.wait_live("live1", lambda s: s.get("state") == "running")
    recorder.wait(lambda: "up" in _read(r.backtest_log("bt-run")))
    r.shutdown()
    assert run_processes(tmp_path) == []
    assert recorder.live_state("live1")["state"] == "stopped"
    assert recorder.backtest("bt-run")["status"] == "failed"
    assert "server stopped" in recorder.backtest("bt-run")["error"]
    assert recorder.backtest("bt-wait")["status"] == "failed"


# ---------------------------------------------------------------- pieces


def test_python_versions_include_the_servers_own(runner: Runner) -> None:
    versions = runner.python_versions()
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" in versions
    assert versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))))


def test_failure_reason_takes_the_exceptions_last_line() -> None:
    log = ("Traceback (most recent call last):\n  File \"bot.py\", line 3, in <module>\n"
           "    x = 1 / 0\nZeroDivisionError: division by zero\n")
    assert failure_reason(log, 1) == "ZeroDivisionError: division by zero"
    assert failure_reason("plain output\n", 2) == "exited with code 2"
    assert failure_reason("", -9) == "killed by SIGKILL"


def test_a_huge_log_keeps_its_start_and_end(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "output.log", max_bytes=64 * 1024, keep_bytes=8 * 1024)
    sink.write("FIRST LINE\n")
    for i in range(5000):
        sink.write(f"line {i:05d} " + "x" * 40 + "\n")
    sink.write("LAST LINE\n")
    text = (tmp_path / "output.log").read_text()
    assert (tmp_path / "output.log").stat().st_size <= 64 * 1024
    assert text.startswith("FIRST LINE\n") and text.endswith("LAST LINE\n")
    assert "bytes of output dropped here" in text
    assert oct((tmp_path / "output.log").stat().st_mode & 0o777) == "0o600"  # rewritten, still private
