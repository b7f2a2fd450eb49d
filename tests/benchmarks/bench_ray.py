"""A backtest on a Ray cluster through the server's runner vs a bare Ray job running `python bot.py`.

A real head on loopback (2 CPUs, `ray start --head`, its own process group). Ours:
the runner with `RayExecutor` backtests the RSI model (600 daily bars) from
`submit_backtest` to the `completed` report: the version's package (built and
sent once, then reused), a job sized by the plan, the driver's private folder
and launcher, the hook, the log followed and the result brought back in it.
The baseline: the same model unzipped, submitted with `JobSubmissionClient` as a
job running `python bot.py` in that working directory, from submit to
`SUCCEEDED`, its status polled as often as ours is. Both are warm (one run each
first). Rounds alternate.

The details also measure, on the same head, what a sweep's size rests on: the
overhead of a Ray job (a job running `true`, submit to `SUCCEEDED`), the
overhead of a Ray task within a job (no-op tasks, one at a time and two at
once), and a sweep's cost per point through `run_points` with a model that only
prints (a task, a private folder, the launcher and a fresh interpreter each).
"""
from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from .harness import Row, interleaved, median, spread

NAME = "ray"
POLL = 0.1  # seconds between status polls of the baseline: ours polls this often in a run's first seconds
TASKS = r"""
import json, time, ray
ray.init(log_to_driver=False)
@ray.remote(num_cpus=1)
def nothing():
    return None
ray.get([nothing.remote() for _ in range(4)])  # the workers are up
n = int(__import__("os").environ["TASKS"])
t = time.perf_counter()
for _ in range(n):
    ray.get(nothing.remote())
one = (time.perf_counter() - t) / n
t = time.perf_counter()
ray.get([nothing.remote() for _ in range(n)])
many = (time.perf_counter() - t) / n
print("TASKS " + json.dumps({"one_at_a_time": one, "two_cpus": many}))
"""


def _bare_job(client, model_dir: Path) -> float:
    started = time.perf_counter()
    submission = client.submit_job(entrypoint="python bot.py", runtime_env={"working_dir": str(model_dir)},
                                   entrypoint_num_cpus=1)
    while True:
        status = client.get_job_status(submission)
        if status.is_terminal():
            break
        time.sleep(POLL)
    if status != "SUCCEEDED" or "Blankly Metrics" not in client.get_job_logs(submission):
        raise RuntimeError(f"the bare job failed ({status}): {client.get_job_logs(submission)[-2000:]}")
    return time.perf_counter() - started


def _job_overhead(client, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        submission = client.submit_job(entrypoint="true")
        while not client.get_job_status(submission).is_terminal():
            time.sleep(POLL)
        samples.append(time.perf_counter() - started)
    return samples


def _task_overhead(client, tmp: Path, tasks: int) -> dict:
    folder = tmp / "tasks"
    folder.mkdir()
    (folder / "tasks.py").write_text(TASKS)
    submission = client.submit_job(entrypoint="python tasks.py",
                                   runtime_env={"working_dir": str(folder), "env_vars": {"TASKS": str(tasks)}})
    while not client.get_job_status(submission).is_terminal():
        time.sleep(0.5)
    logs = client.get_job_logs(submission)
    line = next((l for l in logs.splitlines() if l.startswith("TASKS ")), None)
    if line is None:
        raise RuntimeError(f"the task job failed: {logs[-2000:]}")
    return json.loads(line[len("TASKS "):])


def _points(executor, tmp: Path, name: str, zip_path: Path, count: int) -> dict:
    """A sweep of ``count`` points, 2 at once: the seconds until the first point started (the job
    and its workers coming up), the core-seconds per point after that, and a point's own run."""
    from blankly_magics.server.runner import LogSink, RunLimits, RunRequest
    from blankly_magics.server.runner.process import RunStop
    from tests.fixtures_notebooks import RSI_BACKTEST_ARGS

    args = base64.b64encode(json.dumps(RSI_BACKTEST_ARGS).encode()).decode()
    requests = [RunRequest(f"backtest-{name}{i}", "backtest", tmp / name / str(i), zip_path, f"v-{name}", "",
                           {"BACKTESTING": "1", "BACKTESTING_ID": f"{name}{i}", "BACKTESTING_ARGS": args},
                           RunLimits(), deadline=True)
                for i in range(count)]
    ended = []
    submitted = time.time()
    executor.run_points(requests, lambda r: LogSink(Path(r.folder) / "output.log"), RunStop(),
                        lambda r, pid, at: None, lambda r, end: ended.append(end), parallel=2)
    if len(ended) != count or any(e.code != 0 for e in ended):
        raise RuntimeError(f"the sweep's points did not all complete: {[(e.code, e.reason) for e in ended]}")
    first = min(e.started for e in ended)
    return {"startup": first - submitted, "per_point": (max(e.ended for e in ended) - first) / count * 2,
            "own": median([e.ended - e.started for e in ended]), "total": time.time() - submitted}


def _sweep_table(startup: float, own: float, overhead: float) -> list[str]:
    rows = []
    for nodes, cores in ((1, 2), (4, 8), (16, 16)):
        rounds = -(-1000 // (nodes * cores))
        rows.append(f"  {nodes} node(s) of {cores} cores: {startup:.0f} s + {rounds} x ({own:.2f} + "
                    f"{overhead:.3f}) s = {startup + rounds * (own + overhead):.0f} s")
    return rows


def run(quick: bool = False) -> list[Row]:
    from blankly_magics.server.runner import BacktestJob, Runner
    from blankly_magics.server.runner.ray_executor import RayExecutor
    from tests.fixtures_notebooks import RSI_BACKTEST_ARGS
    from tests.server.runner.ray_heads import start_head
    from tests.server.runs import Recorder, model_zip, rsi_script

    repeats = 2 if quick else 7
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    head = start_head(cpus=2)
    runner = None
    try:
        client = head.client()
        zip_path = model_zip(tmp / "rsi.zip", rsi_script())
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp / "unzipped")
        model_dir = tmp / "unzipped" / "model"
        recorder = Recorder()
        executor = RayExecutor(tmp / "data", head.address)
        runner = Runner(tmp / "data", recorder.on_backtest, recorder.on_live, max_workers=1, executor=executor)
        runner.start()
        done: list[dict] = []

        def ours() -> float:
            backtest_id = f"bt{len(done)}"
            started = time.perf_counter()
            runner.submit_backtest(BacktestJob(backtest_id, "m", "v", "p", zip_path, "", dict(RSI_BACKTEST_ARGS)))
            final = recorder.wait_backtest(backtest_id, timeout=600)
            elapsed = time.perf_counter() - started
            if final["status"] != "completed":
                raise RuntimeError(f"the backtest on Ray failed: {final.get('error')}")
            done.append(final)
            return elapsed

        ours()  # warm: the package is sent once
        _bare_job(client, model_dir)
        samples = interleaved({"ours": ours, "bare": lambda: _bare_job(client, model_dir)}, repeats)
        job = _job_overhead(client, 3 if quick else 7)
        tasks = _task_overhead(client, tmp, 50 if quick else 300)
        points = 6 if quick else 40
        printing = model_zip(tmp / "print.zip", "print('a point')\n", prices=False)
        sweep = _points(executor, tmp, "print", printing, points)
        rsi = _points(executor, tmp, "rsi", zip_path, 4 if quick else 12)
    finally:
        if runner is not None:
            runner.shutdown()
        head.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    mine, theirs = median(samples["ours"]), median(samples["bare"])
    details = [
        f"seconds: ours {spread(samples['ours'], 2)}; bare job {spread(samples['bare'], 2)}",
        f"a Ray job's own overhead (`true`, submit to SUCCEEDED): {spread(job, 2)} s",
        f"a Ray task's overhead in a job: {tasks['one_at_a_time'] * 1000:.1f} ms one at a time, "
        f"{tasks['two_cpus'] * 1000:.1f} ms each with two CPUs busy",
        f"a sweep through run_points, {points} points of a model that only prints, 2 at once: {sweep['total']:.1f} s "
        f"in all, one job; {sweep['startup']:.1f} s until the first point started (the job, its driver, two "
        f"workers), then {sweep['per_point']:.2f} core-seconds per point ({sweep['own']:.2f} s of which the "
        "point's own folder, launcher and interpreter)",
        f"an RSI point's own run on the cluster (interpreter, Blankly's imports, the backtest): {rsi['own']:.2f} s",
        "so a 1,000-point RSI sweep on N nodes of C cores takes about (the sweep's start) + 1000 / (N x C) x "
        "(a point's own run + the per-point overhead):",
        *_sweep_table(sweep["startup"], rsi["own"], max(sweep["per_point"] - sweep["own"], 0.0)),
    ]
    return [Row("ray: RSI backtest as a Ray job, warm", mine, theirs, "s", details)]
