"""The runner on a real Ray cluster: one head on loopback for the module (2 CPUs), real jobs.

Every run here is a Ray job the tests can see through the cluster's own job API
(``list_jobs``): its metadata, entrypoint, runtime environment and log.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Iterator

import pytest

from blankly_magics.server.runner import BacktestJob, LiveJob, LogSink, Runner, RunLimits, RunRequest
from blankly_magics.server.runner.prepare import platform_vars
from blankly_magics.server.runner.process import RunStop
from blankly_magics.server.runner.ray_executor import RayExecutor
from tests.fixtures_notebooks import BLANKLY_PIN, RSI_BACKTEST_ARGS
from tests.server.runner.ray_heads import RayHead, start_head
from tests.server.runs import Recorder, model_zip, rsi_script

pytestmark = pytest.mark.slow
SECRET = b'{"binance": {"main": {"API_KEY": "key-7f3a9c", "API_SECRET": "s3cr3t-5e1d77b0c4"}}}'


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    head = start_head(cpus=2)
    yield head
    head.stop()


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def ray_runner(ray_head: RayHead, recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    data = tmp_path_factory.mktemp("ray-runner")
    runner = Runner(data, recorder.on_backtest, recorder.on_live, max_workers=2, restart_backoff=0.2,
                    max_restarts=1, grace=2.0, executor=RayExecutor(data, ray_head.address, schedule_wait=3.0))
    runner.start()
    yield runner
    runner.shutdown()  # what still runs is left to the head, which the module's end stops


def backtest(backtest_id: str, zip_path: Path, args: dict | None = None, limits: RunLimits = RunLimits()
             ) -> BacktestJob:
    return BacktestJob(backtest_id, f"model-{backtest_id}", f"version-{backtest_id}", "project-1", zip_path, "",
                       dict(RSI_BACKTEST_ARGS if args is None else args), limits=limits, user_id="user-1")


def test_the_rsi_backtest_on_ray_gives_the_local_executors_result_and_its_job_names_it(
        ray_head: RayHead, ray_runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "rsi.zip", rsi_script(), requirements=BLANKLY_PIN + "\n")
    ray_runner.submit_backtest(backtest("bt-rsi", zip_path))
    local_recorder = Recorder()
    local = Runner(tmp_path / "local", local_recorder.on_backtest, local_recorder.on_live, max_workers=1)
    local.start()
    try:
        local.submit_backtest(backtest("bt-rsi", zip_path))
        here = local_recorder.wait_backtest("bt-rsi")
    finally:
        local.shutdown()
    on_ray = recorder.wait_backtest("bt-rsi")
    log = ray_runner.backtest_log("bt-rsi").read_text()
    assert on_ray["status"] == "completed", (on_ray.get("error"), log[-3000:])
    assert here["status"] == "completed" and on_ray["exit_code"] == 0
    assert on_ray["result"]["metrics"] == here["result"]["metrics"] and "Sharpe Ratio" in here["result"]["metrics"]
    assert _without_ids(on_ray["result"]["trades"]) == _without_ids(here["result"]["trades"]) != []
    assert on_ray["result"]["account_values"] == here["result"]["account_values"]

    [job] = ray_head.jobs(backtestId="bt-rsi")
    assert job.status == "SUCCEEDED" and job.entrypoint == "python _blankly/driver.py"
    assert {k: job.metadata[k] for k in ("kind", "modelId", "versionId", "userId")} == {
        "kind": "backtest", "modelId": "model-bt-rsi", "versionId": "version-bt-rsi", "userId": "user-1"}
    assert job.runtime_env["working_dir"].startswith("gcs://") and "pip" not in job.runtime_env
    assert f"submitting Ray job {job.submission_id}" in log and "Blankly Metrics" in log
    assert "Running entrypoint" not in log  # Ray's own lines stay out of the model's log


def test_a_live_job_that_fails_is_resubmitted_with_the_backoff_then_left_crashed(
        ray_head: RayHead, ray_runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    script = "print('starting up', flush=True)\nraise RuntimeError('exchange keys missing')\n"
    zip_path = model_zip(tmp_path / "crash.zip", script, prices=False)
    ray_runner.deploy(LiveJob("crashy", "version-crashy", "project-1", zip_path, "", user_id="user-1"))
    final = recorder.wait_live("crashy", lambda s: s.get("state") == "crashed", timeout=240)
    assert final["restarts"] == 1  # the fixture allows one restart
    assert final["error"] == "RuntimeError: exchange keys missing (gave up after 1 restarts)"
    assert final["log_tail"].count("starting up") == 2 and "restart 1 of 1 in 0.2 s" in final["log_tail"]
    jobs = ray_head.jobs(modelId="crashy")
    assert len(jobs) == 2 and {j.status for j in jobs} == {"FAILED"}
    assert {j.metadata["kind"] for j in jobs} == {"live"} and {j.metadata["userId"] for j in jobs} == {"user-1"}


def test_a_sweeps_points_run_as_tasks_of_one_job_and_all_complete(
        ray_head: RayHead, ray_runner: Runner, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "rsi.zip", rsi_script())
    requests = []
    for i, usd in enumerate((1000, 2500, 4000)):
        env = platform_vars(project_id="project-1", model_id="model-sweep", version_id="version-sweep",
                            user_id="user-1", model_type="strategy")
        args = {**RSI_BACKTEST_ARGS, "initial_values": {"USD": usd}}
        env.update(BACKTESTING="1", BACKTESTING_ID=f"point-{i}",
                   BACKTESTING_ARGS=base64.b64encode(json.dumps(args).encode()).decode())
        requests.append(RunRequest(f"backtest-point-{i}", "backtest", tmp_path / f"point-{i}", zip_path,
                                   "version-sweep", "", env, RunLimits(), deadline=True))
    started, ended = [], {}
    ray_runner.executor.run_points(requests, lambda r: LogSink(Path(r.folder) / "output.log"), RunStop(),
                                   lambda r, pid, at: started.append(r.run_id),
                                   lambda r, end: ended.update({r.run_id: end}), parallel=2)
    assert sorted(started) == sorted(ended) == [r.run_id for r in requests]
    for request, usd in zip(requests, (1000, 2500, 4000)):
        end = ended[request.run_id]
        log = (Path(request.folder) / "output.log").read_text()
        assert end.code == 0 and end.reason is None, log[-2000:]
        assert json.loads(end.reports["backtest_result.json"])["initial_account_value"] == usd
        assert "Blankly Metrics" in log and "ran on Ray node" in log
    [job] = ray_head.jobs(kind="sweep", versionId="version-sweep")
    assert job.status == "SUCCEEDED" and job.metadata["points"] == "3" and job.metadata["userId"] == "user-1"
    assert ray_head.jobs(backtestId="point-0") == []  # no job of its own: a task of the sweep's


def test_secret_files_reach_the_run_alone_never_the_job_api_or_the_logs(
        ray_head: RayHead, ray_runner: Runner, tmp_path: Path) -> None:
    script = (
        "import hashlib, os, stat\n"
        "data = open('keys.json', 'rb').read()\n"
        "print('keys', hashlib.sha256(data).hexdigest(), oct(stat.S_IMODE(os.stat('keys.json').st_mode)))\n"
        "print('folder', os.getcwd(), flush=True)\n"
    )
    zip_path = model_zip(tmp_path / "keys.zip", script, prices=False)
    env = platform_vars(project_id="project-1", model_id="model-keys", version_id="version-keys",
                        user_id="user-1", model_type="strategy")
    request = RunRequest("live-model-keys", "live", tmp_path / "keys-run", zip_path, "version-keys", "", env,
                         RunLimits(cpu=250), secret_files={"keys.json": SECRET})
    executor, log = ray_runner.executor, LogSink(tmp_path / "keys-run" / "output.log")
    prepared = executor.prepare(request, log, RunStop())
    end = executor.run(prepared, log, RunStop(), lambda pid, at: None)
    executor.release(prepared)
    text = log.path.read_text()
    assert end.code == 0 and end.reason is None, text[-2000:]
    assert f"keys {hashlib.sha256(SECRET).hexdigest()} 0o600" in text
    folder = Path(text.split("folder ", 1)[1].split()[0])
    assert not folder.exists()  # the run's private folder, keys and all, went with the run (this machine is the node)

    [job] = ray_head.jobs(modelId="model-keys")
    shown = json.dumps(job.model_dump(), default=str) + ray_head.client().get_job_logs(job.submission_id)
    for part in (b"key-7f3a9c", b"s3cr3t-5e1d77b0c4", base64.b64encode(SECRET)):
        assert part.decode() not in shown and part.decode() not in text
    assert not list(executor.packages.parent.rglob("job-*.zip"))  # the job's own package left the server's disk


def test_a_backtest_past_its_time_limit_and_a_cancelled_one_stop_their_jobs(
        ray_head: RayHead, ray_runner: Runner, recorder: Recorder, tmp_path: Path) -> None:
    script = "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n"
    zip_path = model_zip(tmp_path / "sleep.zip", script, prices=False)
    ray_runner.submit_backtest(backtest("bt-slow", zip_path, {}, RunLimits(cpu=500, timeout=4)))
    ray_runner.submit_backtest(backtest("bt-cancel", zip_path, {}, RunLimits(cpu=500)))
    recorder.wait(lambda: "sleeping" in _read(ray_runner.backtest_log("bt-cancel")), timeout=120)
    assert ray_runner.cancel_backtest("bt-cancel") is True
    cancelled, slow = recorder.wait_backtest("bt-cancel"), recorder.wait_backtest("bt-slow")
    assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled by the user"
    assert slow["status"] == "failed" and slow["error"] == "stopped: exceeded the plan's time limit of 4 s"
    assert [j.status for j in ray_head.jobs(backtestId="bt-cancel")] == ["STOPPED"]
    assert [j.status for j in ray_head.jobs(backtestId="bt-slow")] == ["FAILED"]


def test_a_plan_no_node_can_take_fails_saying_so(ray_head: RayHead, ray_runner: Runner, recorder: Recorder,
                                                 tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "rsi.zip", rsi_script())
    ray_runner.submit_backtest(backtest("bt-huge", zip_path, limits=RunLimits(cpu=64000)))
    final = recorder.wait_backtest("bt-huge", timeout=120)
    assert final["status"] == "failed"
    assert final["error"].startswith("no node of the Ray cluster has the plan's 64 CPUs and 2048 MB of memory "
                                     "(its largest have 2 CPUs and "), final["error"]
    assert final["error"].endswith("choose a smaller plan or add a node that large to the cluster")
    # It never ran: Ray keeps a job no node can start pending (a stop waits for its start) until its own
    # start timeout fails it; the server has moved on.
    assert [j.status for j in ray_head.jobs(backtestId="bt-huge")] in (["PENDING"], ["STOPPED"])
    assert "Backtesting" not in _read(ray_runner.backtest_log("bt-huge"))


def test_an_environment_pip_cannot_build_fails_with_pips_message(ray_head: RayHead, ray_runner: Runner,
                                                                 recorder: Recorder, tmp_path: Path) -> None:
    zip_path = model_zip(tmp_path / "bad.zip", "print('never')\n", prices=False,
                         requirements="blankly-magics-no-such-package==9.9\n")
    ray_runner.submit_backtest(backtest("bt-pip", zip_path, {}))
    final = recorder.wait_backtest("bt-pip", timeout=300)
    assert final["status"] == "failed"
    assert final["error"].startswith("the model's environment could not be built on the Ray cluster: pip install "
                                     "failed: ERROR: "), final["error"]
    assert "No matching distribution found for blankly-magics-no-such-package==9.9" in final["error"]
    assert "never" not in _read(ray_runner.backtest_log("bt-pip"))
    [job] = ray_head.jobs(backtestId="bt-pip")
    assert job.runtime_env["pip"]["packages"] == ["blankly-magics-no-such-package==9.9"]


def _without_ids(trades: list[dict]) -> list[dict]:
    return [{k: v for k, v in trade.items() if k != "id"} for trade in trades]  # Blankly's order ids are random


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
