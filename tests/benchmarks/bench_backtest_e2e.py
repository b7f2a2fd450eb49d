"""``%%blankly_deploy --backtest`` of the quickstart, cell start to metrics shown, vs ``python bot.py``.

A real IPython ``InteractiveShell`` runs in a worker process (private
``BLANKLY_MAGICS_HOME`` and ``HOME``, ``BLANKLY_NOTEBOOK_PATH`` naming a copy of
the quickstart): ``%load_ext blankly_magics``, ``%blankly_login`` (starts the
embedded server), one warm-up deploy that also saves the zip; then, on request,
it runs the quickstart's own ``%%blankly_deploy`` cell and reports the time from
cell start until the cell returned with the metrics displayed. The baseline runs
``python bot.py`` in the unzipped copy of that same zip. Runs alternate; the
environment is reused (warm), as in daily use: the server keeps sandboxes with Blankly
imported ready (warm workers), and before each step the machine is let settle (the
server's processes idle, its pool refilled after the previous backtest), so that no step
pays for another. The server's backtest timestamps split our time into phases, to show
what dominates. The first deploy (cold: the pool fills from the server's first backtest
on, and the kernel imports the export pipeline and matplotlib) is a row of its own.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .harness import QUICKSTART, REPO, Row, ShellWorker, child_env, interleaved, median, spread

NAME = "backtest_e2e"
STEP_TIMEOUT = 600.0

WORKER = r"""
cell = json.loads(sys.argv[1])
save = sys.argv[2]

run("%load_ext blankly_magics")
t0, t1, _ = run("%blankly_login")
answer(login=t1 - t0)
first, rest = cell.split("\n", 1)
t0, t1, shown = run(f"{first} --save {save}\n{rest}")
answer(cold=t1 - t0)
for line in sys.stdin:
    if line.strip() != "run":
        break
    started, ended, shown = run(cell)
    result = shell.user_ns["_"]
    if result.status != "completed" or not result.metrics:
        raise SystemExit(f"the backtest did not complete: {result.status} {result.error}\n{shown[-3000:]}")
    if "Sharpe" not in shown:
        raise SystemExit(f"the metrics were not shown:\n{shown[-3000:]}")
    from blankly_magics import session
    from blankly_magics.workflow import fetch_backtest
    current = session.current()
    status = current.client.backtest_status(result.backtest_id)
    # Fetch and show the same result again, apart, to split the tail of the cell.
    t = time.time()
    again = fetch_backtest(current, result.backtest_id)
    fetch = time.time() - t
    again.show_chart = result.show_chart
    t = time.time()
    shell.display_formatter.format(again)
    render = time.time() - t
    answer(seconds=ended - started, started=started, ended=ended, created=status["createdAt"],
           run_started=status["startedAt"], run_ended=status["endedAt"], fetch=fetch, render=render)
"""


def deploy_cell(notebook: Path) -> str:
    """The quickstart's own ``%%blankly_deploy`` cell, as written there."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for c in cells:
        source = "".join(c["source"])
        if c["cell_type"] == "code" and source.startswith("%%blankly_deploy"):
            return source
    raise RuntimeError(f"{notebook} has no %%blankly_deploy cell")


def copy_quickstart(folder: Path) -> Path:
    notebooks = REPO / "notebooks"
    folder.mkdir(parents=True)
    for name in ("quickstart.ipynb", "settings.json", "backtest.json"):
        shutil.copy(notebooks / name, folder / name)
    (folder / "data").mkdir()
    shutil.copy(notebooks / "data" / "GOOG-USD-1d.csv", folder / "data")
    return folder / QUICKSTART.name


class Worker(ShellWorker):
    """The IPython worker process; ``step()`` runs the deploy cell once and returns its figures."""

    def __init__(self, tmp: Path, notebook: Path, save: Path) -> None:
        env = child_env(
            HOME=str(tmp / "home"), BLANKLY_MAGICS_HOME=str(tmp / "magics-home"),
            IPYTHONDIR=str(tmp / "ipython"), BLANKLY_NOTEBOOK_PATH=str(notebook),
        )
        (tmp / "home").mkdir()
        super().__init__(WORKER, [json.dumps(deploy_cell(notebook)), str(save)], env, notebook.parent,
                         tmp / "worker.log")
        self.login = self.read()["login"]
        self.cold = self.read()["cold"]

    def step(self) -> dict:
        return self.ask("run")


def settle(data_dir: Path, timeout: float = 30.0) -> None:
    """Wait until the server named in ``data_dir/server.json`` and its processes (its warm
    workers) have used under a tenth of a core for a quarter second."""
    import psutil

    pid = json.loads((data_dir / "server.json").read_text())["pid"]
    deadline = time.monotonic() + timeout

    def cpu() -> dict[int, float]:
        try:
            root = psutil.Process(pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return {}
        seen = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
                seen[proc.pid] = times.user + times.system
            except psutil.Error:
                pass
        return seen

    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu()
        used = sum(max(0.0, t - before.get(p, t)) for p, t in now.items()) + 0.1 * (set(now) != set(before))
        if used < 0.025:
            return
        before = now


def bot_py(model_dir: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "bot.py"], cwd=model_dir, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=STEP_TIMEOUT, check=True)
    return time.perf_counter() - started


def bot_py_as_runner(zip_path: Path, tmp: Path) -> float:
    """``bot.py`` started as the server's runner starts it (unpacked, in its sandbox, its environment,
    the platform hook, lowered priority), without the server: separates the run's cost from the server's."""
    import base64
    import uuid

    from blankly_magics.server.runner import LocalExecutor, LogSink, RunRequest
    from blankly_magics.server.runner.process import RunStop
    from blankly_magics.server.runner.sandbox import find_bwrap

    run_id = uuid.uuid4().hex
    with zipfile.ZipFile(zip_path) as zf:
        args = json.loads(zf.read("model/blankly.json"))["backtest_args"]  # the cell's --start etc.
    executor = LocalExecutor(tmp / "runner-data", find_bwrap(), warm_workers=0)  # a cold start, as measured
    executor.start()
    request = RunRequest(
        run_id=f"backtest-{run_id}", kind="backtest", folder=tmp / "runner-data" / "runs" / "backtests" / run_id,
        zip_path=zip_path, version_id="v1", python_version="", deadline=True,
        env={"BACKTESTING": "1", "BACKTESTING_ID": run_id,
             "BACKTESTING_ARGS": base64.b64encode(json.dumps(args).encode()).decode()},
    )
    log, stop = LogSink(request.folder / "output.log"), RunStop()
    prepared = executor.prepare(request, log, stop)
    started = time.perf_counter()
    end = executor.run(prepared, log, stop, lambda pid, at: None)
    elapsed = time.perf_counter() - started
    executor.release(prepared)
    if end.code != 0 or "backtest_result.json" not in end.reports:
        raise RuntimeError(f"bot.py under the runner's settings failed ({end.code}): {log.tail()}")
    return elapsed


def run(quick: bool = False) -> list[Row]:
    repeats = 1 if quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    worker = None
    try:
        notebook = copy_quickstart(tmp / "nb")
        save = tmp / "saved-model.zip"
        worker = Worker(tmp, notebook, save)
        with zipfile.ZipFile(save) as zf:
            zf.extractall(tmp / "unzipped")
        model_dir = tmp / "unzipped" / "model"
        env = {k: v for k, v in worker.env.items() if k != "BLANKLY_NOTEBOOK_PATH"}
        bot_py(model_dir, env)  # warm-up, like the worker's first deploy
        steps: list[dict] = []

        magics_home = Path(worker.env["BLANKLY_MAGICS_HOME"])

        def ours() -> float:
            settle(magics_home)
            steps.append(worker.step())  # type: ignore[union-attr]
            return steps[-1]["seconds"]

        def baseline() -> float:
            settle(magics_home)
            return bot_py(model_dir, env)

        def runner_child() -> float:
            settle(magics_home)
            return bot_py_as_runner(save, tmp)

        samples = interleaved({"ours": ours, "bot.py": baseline, "runner_child": runner_child}, repeats)
        login, cold = worker.login, worker.cold
    finally:
        if worker is not None:
            worker.close()
        shutil.rmtree(tmp, ignore_errors=True)

    mine, theirs = median(samples["ours"]), median(samples["bot.py"])
    phases = {
        "build + upload + store": [s["created"] - s["started"] for s in steps],
        "queued": [s["run_started"] - s["created"] for s in steps],
        "run on the server (process, imports, backtest, report)": [s["run_ended"] - s["run_started"] for s in steps],
        "poll lag (run ended -> the cell saw it)": [
            s["ended"] - s["run_ended"] - s["fetch"] - s["render"] for s in steps
        ],
        "fetch the result (status, result, logs)": [s["fetch"] for s in steps],
        "render (text, HTML table, equity chart PNG)": [s["render"] for s in steps],
    }
    details = [
        f"seconds: ours {spread(samples['ours'], 2)}; python bot.py {spread(samples['bot.py'], 2)}",
        f"bot.py started as the runner starts it (in its sandbox, hook, its env, nice), no server: "
        f"{spread(samples['runner_child'], 2)}",
        "where ours spends its time (median seconds, from the server's timestamps):",
    ]
    details += [f"  {name}: {spread(values, 2)}" for name, values in phases.items()]
    return [Row("backtest e2e: quickstart, warm", mine, theirs, "s", details),
            Row("backtest e2e: quickstart, first deploy (cold)", cold, theirs, "s", [
                f"the server's first backtest, after %blankly_login ({login:.2f} s, not counted): one sample, "
                "against the median of python bot.py"])]
