"""Warm workers: what an idle one costs in memory, and a sweep's points run in lanes forked from one.

The server's executor (``LocalExecutor``, real bubblewrap sandboxes) runs in this process.
Memory: the resident memory of an idle warm worker's whole sandbox (bubblewrap's two processes
and the worker, Blankly, numpy and pandas imported), against a plain ``python`` that imported
the same modules. Sweeps: ``run_points`` of N backtests of the RSI strategy (each its own
initial cash), two at once on this 2-core machine, started with an idle worker of the pool
ready, against what a user does by hand: the same N backtests one after another in one Python
process that already imported Blankly (a kernel loop), over the repository's 420 daily GOOG
bars and over 4,000 synthetic daily bars. And the overhead of one point: a point whose script
does nothing, one at a time, against one 420-bar backtest in that loop.
"""
from __future__ import annotations

import base64
import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .harness import Row, child_env, interleaved, last_json_line, median, run_child, spread

SHORT = {"start_date": "2010-06-01", "end_date": "2012-02-04"}  # 420 of the repository's daily bars
LONG_BARS = 4000

LOOP = r"""
import contextlib, io, json, os, sys, time
os.chdir(sys.argv[1])
args = json.loads(sys.argv[2])
source = open("bot.py").read().split("if blankly.is_deployed:")[0]  # the strategy, without its entry
exec(compile(source, "bot.py", "exec"))
times = []
for kwargs in args:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = strategy.backtest(**kwargs, GUI_output=False)
    times.append(time.perf_counter() - started)
print(json.dumps({"seconds": times}))
"""

MEMORY = r"""
import json, sys, psutil
import numpy, pandas, blankly
print(json.dumps({"rss": psutil.Process().memory_info().rss}), flush=True)
"""


def synthetic_prices(path: Path, bars: int) -> None:
    """A daily random walk of ``bars`` + 60 bars (the strategy reads 50 before its start)."""
    rng = random.Random(7)
    price, start = 100.0, 946684800  # 2000-01-01
    lines = ["time,open,high,low,close,volume"]
    for i in range(bars + 60):
        change = math.exp(rng.gauss(0.0003, 0.02))
        close = price * change
        lines.append(f"{start + 86400 * i},{price:.4f},{max(price, close) * 1.01:.4f},"
                     f"{min(price, close) * 0.99:.4f},{close:.4f},{rng.randint(1000, 9000)}")
        price = close
    path.write_text("\n".join(lines) + "\n")


def period(bars: int) -> dict[str, str]:
    return {"start_date": time.strftime("%Y-%m-%d", time.gmtime(946684800 + 86400 * 60)),
            "end_date": time.strftime("%Y-%m-%d", time.gmtime(946684800 + 86400 * (bars + 59)))}


class Executor:
    """A LocalExecutor with a pool of one warm worker, in this process."""

    def __init__(self, tmp: Path) -> None:
        from blankly_magics.server.runner import LocalExecutor
        from blankly_magics.server.runner.sandbox import find_bwrap

        self.root = tmp / "data"
        self.executor = LocalExecutor(self.root, find_bwrap(), warm_workers=1)
        self.executor.start()
        self.count = 0

    def ready(self) -> None:
        """Wait for the pool's idle worker to be ready (it refills after a sweep)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            idle = self.executor.pool.idle()
            if idle and idle[0].sandbox.wait_ready() is None:
                return
            time.sleep(0.05)
        raise RuntimeError("the pool's warm worker did not get ready in 120 s")

    def sweep(self, zip_path: Path, args: list[dict[str, Any]], parallel: int, *, warm: bool = True
              ) -> tuple[float, list[Any]]:
        """run_points of one point per ``args`` (``warm``: with the pool's worker ready); (seconds, the exits)."""
        from blankly_magics.server.runner import LogSink, RunRequest
        from blankly_magics.server.runner.process import RunStop

        if warm:
            self.ready()
        requests = []
        for kwargs in args:
            self.count += 1
            ident = f"p{self.count}"
            requests.append(RunRequest(
                run_id=f"backtest-{ident}", kind="backtest", folder=self.root / "runs" / "backtests" / ident,
                zip_path=zip_path, version_id="v1", python_version="", deadline=True,
                env={"BACKTESTING": "1", "BACKTESTING_ID": ident,
                     "BACKTESTING_ARGS": base64.b64encode(json.dumps(kwargs).encode()).decode()}))
        exits: dict[str, Any] = {}
        started = time.perf_counter()
        self.executor.run_points(requests, lambda r: LogSink(r.folder / "output.log"), RunStop(),
                                 lambda r, pid, at: None, lambda r, end: exits.__setitem__(r.run_id, end),
                                 parallel=parallel)
        seconds = time.perf_counter() - started
        failed = [r.run_id for r in requests if exits[r.run_id].code != 0]
        if failed:
            raise RuntimeError(f"sweep points failed: {failed}: "
                               f"{(requests[0].folder / 'output.log').read_text()[-2000:]}")
        for request in requests:
            shutil.rmtree(request.folder, ignore_errors=True)
        return seconds, [exits[r.run_id] for r in requests]

    def idle_memory(self) -> dict[str, float]:
        import psutil

        self.ready()
        top = psutil.Process(self.executor.pool.idle()[0].sandbox.child.pid)
        procs = [top] + top.children(recursive=True)
        infos = [p.memory_full_info() for p in procs]
        return {"rss": sum(i.rss for i in infos) / 2**20, "uss": sum(i.uss for i in infos) / 2**20,
                "pss": sum(i.pss for i in infos) / 2**20, "processes": len(procs)}

    def close(self) -> None:
        self.executor.close()


def model(tmp: Path, name: str, script: str, prices: Path) -> tuple[Path, Path]:
    """(a model zip of ``script`` with ``prices`` as its CSV, the folder it was made from)."""
    from tests.server.runs import model_zip

    folder = tmp / name
    folder.mkdir()
    shutil.copy(prices, folder / "GOOG-USD-1d.csv")
    (folder / "bot.py").write_text(script)
    return model_zip(tmp / f"{name}.zip", script, prices=False,
                     files={"GOOG-USD-1d.csv": prices.read_text()}), folder


def kernel_loop(folder: Path, args: list[dict[str, Any]]) -> list[float]:
    """Seconds of each backtest, one after another in one process that imported Blankly already."""
    from tests.server.runs import blankly_settings

    settings, backtest = blankly_settings()
    backtest["settings"]["GUI_output"] = False
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "backtest.json").write_text(json.dumps(backtest))
    return last_json_line(run_child(LOOP, str(folder), json.dumps(args), env=child_env()))["seconds"]


def run(quick: bool = False) -> list[Row]:
    from tests.fixtures_notebooks import PRICES_CSV
    from tests.server.runs import rsi_script

    points = 4 if quick else 64
    repeats = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    executor = Executor(tmp)
    try:
        long_csv = tmp / "long.csv"
        synthetic_prices(long_csv, LONG_BARS)
        short_zip, short_dir = model(tmp, "short", rsi_script(), PRICES_CSV)
        long_zip, long_dir = model(tmp, "long", rsi_script(), long_csv)
        nothing_zip, _ = model(tmp, "nothing", "pass\n", PRICES_CSV)
        short_args = [{"initial_values": {"USD": 10000 + 100 * i}, **SHORT} for i in range(points)]
        long_args = [{"initial_values": {"USD": 10000 + 100 * i}, **period(LONG_BARS)} for i in range(points)]
        executor.sweep(nothing_zip, [{}], 1, warm=False)  # the pool fills from the first backtest on
        loops: dict[str, list[float]] = {"short": [], "long": []}
        memory: list[dict[str, float]] = []

        def ours_short() -> float:
            return executor.sweep(short_zip, short_args, 2)[0]

        def loop_short() -> float:
            loops["short"] = kernel_loop(short_dir, short_args)
            return sum(loops["short"])

        def ours_long() -> float:
            return executor.sweep(long_zip, long_args, 2)[0]

        def loop_long() -> float:
            loops["long"] = kernel_loop(long_dir, long_args)
            return sum(loops["long"])

        def overhead() -> float:
            return executor.sweep(nothing_zip, [{}] * points, 1)[0] / points * 1000

        def worker_memory() -> float:
            memory.append(executor.idle_memory())
            return memory[-1]["rss"]

        def plain_memory() -> float:
            return last_json_line(run_child(MEMORY, env=child_env()))["rss"] / 2**20

        samples = interleaved({"ours short": ours_short, "loop short": loop_short, "ours long": ours_long,
                               "loop long": loop_long, "overhead": overhead, "memory": worker_memory,
                               "plain memory": plain_memory}, repeats)
    finally:
        executor.close()
        shutil.rmtree(tmp, ignore_errors=True)

    one_short = median([s / points for s in samples["loop short"]]) * 1000
    rows = [
        Row("warm: idle worker memory (its whole sandbox)", median(samples["memory"]),
            median(samples["plain memory"]), "MB", [
                f"resident MB: worker {spread(samples['memory'])}; plain python with numpy, pandas, blankly "
                f"imported {spread(samples['plain memory'])}",
                f"only this worker's (USS) {median([m['uss'] for m in memory]):.1f} MB, proportional (PSS) "
                f"{median([m['pss'] for m in memory]):.1f} MB, in {int(memory[0]['processes'])} processes"]),
        Row("warm: sweep point overhead (a point doing nothing)", median(samples["overhead"]), one_short, "ms", [
            f"ms per point, one at a time: {spread(samples['overhead'])}; baseline: one 420-bar RSI backtest "
            "in a kernel loop"]),
    ]
    for size, label in (("short", "420 daily bars"), ("long", f"{LONG_BARS:,} daily bars")):
        ours, loop = samples[f"ours {size}"], samples[f"loop {size}"]
        rows.append(Row(f"warm: sweep of {points} RSI points, {label}", median(ours), median(loop), "s", [
            f"seconds: run_points, 2 at once {spread(ours, 2)}; the same backtests in a kernel loop {spread(loop, 2)}",
            f"per point: ours {median(ours) / points * 1000:.0f} ms, the loop's {median(loop) / points * 1000:.0f} ms",
        ]))
    return rows
