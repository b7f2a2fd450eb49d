"""A 64-point sweep of the RSI strategy's thresholds from one ``%%blankly_deploy`` cell, vs doing it by hand.

A real IPython ``InteractiveShell`` runs in a worker process (private ``HOME`` and
``BLANKLY_MAGICS_HOME``; the embedded server, ``--max-workers`` = the cores): it runs
the notebook's strategy cells, then on request either the sweep cell
(``--sweep low=... --sweep high=...``, 8 x 8 points: upload, the server runs a
backtest per point in parallel, the table and heatmap displayed) or the kernel loop a
user writes by hand: the same 64 backtests one after another in the kernel, the
strategy made afresh for each. Both are timed from cell start to cell end, alternated,
over synthetic daily bars (4,000 and 420). A third baseline runs the sweep's model zip
as ``python bot.py`` once per point (``BLANKLY_PARAMETERS`` set), one after another.
The points' own timestamps (the server's, and the hook's ``events.jsonl``) split a point's
time into queue, start, backtest and result; the cell's time beyond the points' own is
the bookkeeping (upload, polls, the table, the render).
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from .harness import Row, ShellWorker, child_env, interleaved, median, spread
from .synthetic import SYNTHETIC_SYMBOL, synthetic_period, write_synthetic_prices

NAME = "sweep"
STEP_TIMEOUT = 1800.0
LOWS, HIGHS = list(range(20, 36, 2)), list(range(66, 82, 2))  # 8 x 8 = 64 points

IMPORTS = "#| blankly\nimport blankly\nfrom blankly import StrategyState\n"
PARAMETERS = "#| blankly: parameters\nlow = 30\nhigh = 70\n"
LOGIC = """#| blankly
def init(symbol, state: StrategyState):
    state.variables["history"] = state.interface.history(symbol, 50, resolution=state.resolution,
                                                         return_as="deque")["close"]
    state.variables["owns_position"] = False


def price_event(price, symbol, state: StrategyState):
    state.variables["history"].append(price)
    rsi = blankly.indicators.rsi(state.variables["history"])
    if rsi[-1] < low and not state.variables["owns_position"]:
        qty = blankly.trunc(state.interface.cash / price, 2)
        if qty > 0:
            state.interface.market_order(symbol, side="buy", size=qty)
            state.variables["owns_position"] = True
    elif rsi[-1] > high and state.variables["owns_position"]:
        qty = blankly.trunc(state.interface.account[state.base_asset].available, 2)
        if qty > 0:
            state.interface.market_order(symbol, side="sell", size=qty)
        state.variables["owns_position"] = False
"""
SETUP = f"""#| blankly
exchange = blankly.KeylessExchange(price_reader=blankly.data.PriceReader("./prices.csv", "{SYNTHETIC_SYMBOL}"))
strategy = blankly.Strategy(exchange)
strategy.add_price_event(price_event, symbol="{SYNTHETIC_SYMBOL}", resolution="1d", init=init)
"""
ENTRY = """if blankly.is_deployed:
    strategy.start()
else:
    strategy.backtest(initial_values={{"USD": 10000}}, start_date="{start}", end_date="{end}", GUI_output=False)
"""

WORKER = r"""
shell.display_formatter.active_types = ["text/plain", "text/html"]  # as a notebook renders a result

def points(result):
    from blankly_magics import session
    client, home = session.current().client, os.environ["BLANKLY_MAGICS_HOME"]
    out = []
    for backtest_id in result.backtests:
        status = client.backtest_status(backtest_id)
        events = {}
        with open(os.path.join(home, "runs", "backtests", backtest_id, "report", "events.jsonl")) as fh:
            for line in fh:
                event = json.loads(line)
                events.setdefault(event["event"], event["time"])
        out.append([status["createdAt"], status["startedAt"], events.get("backtest_start"),
                    events.get("backtest_result"), status["endedAt"]])
    return out

run("%load_ext blankly_magics")
run("%blankly_login")
folders = json.loads(sys.argv[1])
answer(ready=True)
for line in sys.stdin:
    command, size = line.split()
    folder = folders[size]
    os.chdir(folder["dir"])  # Blankly reads its settings and the prices from the working folder
    if command == "setup":
        for source in folder["cells"]:
            run(source)
        answer(done=True)
    elif command == "sweep":
        started, ended, shown = run(folder["sweep"])
        result = shell.user_ns["_"]
        html = shell.display_formatter.format(result)[0].get("text/html", "")
        if result.status != "completed" or "blankly-sweep-table" not in html:
            raise SystemExit(f"the sweep did not complete: {result!r}\n{shown[-3000:]}")
        answer(seconds=ended - started, started=started, ended=ended, points=points(result),
               metrics=[row["metrics"] for row in result.rows], ids=result.backtests)
    elif command == "loop":
        started, ended, _ = run(folder["loop"])
        answer(seconds=ended - started, metrics=shell.user_ns["_loop_metrics"])
    else:
        break
"""

LOOP = """import contextlib, io
_loop_metrics = []
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    for low in {lows}:
        for high in {highs}:
            exchange = blankly.KeylessExchange(price_reader=blankly.data.PriceReader("./prices.csv", "{symbol}"))
            strategy = blankly.Strategy(exchange)
            strategy.add_price_event(price_event, symbol="{symbol}", resolution="1d", init=init)
            _done = strategy.backtest(initial_values={{"USD": 10000}}, start_date="{start}", end_date="{end}",
                                      GUI_output=False)
            _loop_metrics.append({{m["display_name"]: m["value"] for m in _done.get_metrics().values()}})
"""


def prepare(folder: Path, bars: int, lows: list[int], highs: list[int]) -> dict[str, Any]:
    """A notebook folder over ``bars`` synthetic bars, with its sweep cell, its kernel loop and its cells."""
    from blankly_magics.export.manifest import default_backtest_bytes, default_settings_bytes
    from tests.fixtures_notebooks import write_notebook

    write_synthetic_prices(folder / "prices.csv", bars)
    (folder / "settings.json").write_bytes(default_settings_bytes())
    (folder / "backtest.json").write_bytes(default_backtest_bytes())
    start, end = synthetic_period(bars)
    notebook = write_notebook(folder / f"sweep-{bars}.ipynb", [IMPORTS, PARAMETERS, LOGIC, SETUP])
    grid = f"--sweep low={','.join(map(str, lows))} --sweep high={','.join(map(str, highs))}"
    sweep = (f"%%blankly_deploy --backtest --notebook {notebook} --start {start} --end {end} --initial USD=10000 "
             f"{grid} --maximize 'Sharpe Ratio'\n" + ENTRY.format(start=start, end=end))
    loop = LOOP.format(lows=lows, highs=highs, symbol=SYNTHETIC_SYMBOL, start=start, end=end)
    return {"dir": str(folder), "sweep": sweep, "loop": loop, "cells": [IMPORTS, PARAMETERS, LOGIC, SETUP],
            "notebook": str(notebook), "entry": ENTRY.format(start=start, end=end)}


class Worker(ShellWorker):
    """The IPython worker; ``step(command, bars)`` runs one cell and returns its figures."""

    def __init__(self, tmp: Path, folders: dict[str, dict]) -> None:
        (tmp / "home").mkdir()
        self.home = tmp / "magics-home"
        env = child_env(HOME=str(tmp / "home"), BLANKLY_MAGICS_HOME=str(self.home), IPYTHONDIR=str(tmp / "ipy"))
        super().__init__(WORKER, [json.dumps(folders)], env, tmp, tmp / "worker.log")
        self.read()

    def step(self, command: str, bars: int) -> dict:
        return self.ask(f"{command} {bars}")


def bot_py_runs(folder: Path, zip_path: Path, env: dict[str, str], lows: list[int], highs: list[int]) -> float:
    """The sweep's model zip run as ``python bot.py`` once per point, one after another (seconds in all)."""
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(folder)
    model = folder / "model"
    started = time.perf_counter()
    for low in lows:
        for high in highs:
            given = base64.b64encode(json.dumps({"low": low, "high": high}).encode()).decode()
            subprocess.run([sys.executable, "bot.py"], cwd=model, env={**env, "BLANKLY_PARAMETERS": given},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=STEP_TIMEOUT, check=True)
    return time.perf_counter() - started


def phases(step: dict) -> dict[str, float]:
    """Median seconds per point in each phase, and the cell's time beyond the points' own per point."""
    rows = [p for p in step["points"] if None not in p]
    split = {
        "queue (created -> a worker took it)": [p[1] - p[0] for p in rows],
        "start (unzip, sandbox, interpreter, imports, the script's top)": [p[2] - p[1] for p in rows],
        "backtest (Blankly's own)": [p[3] - p[2] for p in rows],
        "result (process end, report read, result stored)": [p[4] - p[3] for p in rows],
    }
    out = {name: median(values) for name, values in split.items()}
    running = max(p[4] for p in rows) - min(p[1] for p in rows)
    out["bookkeeping per point (the cell's time beyond the points': build, upload, polls, table, render)"] = (
        (step["seconds"] - running) / len(rows))
    out["upload and store (cell start -> the points were created)"] = min(p[0] for p in rows) - step["started"]
    out["after the last point (its end -> the table shown)"] = step["ended"] - max(p[4] for p in rows)
    return out


def run(quick: bool = False) -> list[Row]:
    lows, highs = (LOWS[:2], HIGHS[:1]) if quick else (LOWS, HIGHS)
    repeats = 1 if quick else 3
    points = len(lows) * len(highs)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    worker = None
    rows: list[Row] = []
    try:
        folders = {str(bars): prepare(tmp / f"bars-{bars}", bars, lows, highs) for bars in (4000, 420)}
        worker = Worker(tmp, folders)
        for bars in folders:
            worker.step("setup", int(bars))
        warm = worker.step("sweep", 420)  # first imports (matplotlib), the model, the environment
        worker.step("loop", 420)
        for bars in (4000, 420):
            steps: list[dict] = []

            def sweep(bars: int = bars) -> float:
                steps.append(worker.step("sweep", bars))  # type: ignore[union-attr]
                return steps[-1]["seconds"]

            loops: list[dict] = []

            def loop(bars: int = bars) -> float:
                loops.append(worker.step("loop", bars))  # type: ignore[union-attr]
                return loops[-1]["seconds"]

            samples = interleaved({"sweep": sweep, "loop": loop}, repeats)
            same = all(s["metrics"] == l["metrics"] for s, l in zip(steps, loops))
            split = {name: [phases(s)[name] for s in steps] for name in phases(steps[0])}
            details = [
                f"seconds: sweep cell {spread(samples['sweep'], 2)}; kernel loop {spread(samples['loop'], 2)}",
                f"per point: sweep {median(samples['sweep']) / points * 1000:.0f} ms, kernel "
                f"{median(samples['loop']) / points * 1000:.0f} ms; every point's metrics equal the kernel's: {same}",
                f"where a point's time goes (median seconds over the sweeps' points; {points} points, "
                "the server's backtest workers in parallel):",
            ]
            details += [f"  {name}: {spread(values, 3)}" for name, values in split.items()]
            rows.append(Row(f"sweep: {points} points x {bars:,} bars, cell vs the kernel loop",
                            median(samples["sweep"]), median(samples["loop"]), "s", details))
            if bars == 420:
                saved = tmp / "model.zip"
                shutil.copy(_version_zip(worker.home, warm["ids"][0]), saved)
                env = {k: v for k, v in worker.env.items() if k != "BLANKLY_MAGICS_HOME"}
                bot = bot_py_runs(tmp / "bot", saved, env, lows, highs)
                rows.append(Row(f"sweep: {points} points x 420 bars, cell vs {points} python bot.py runs",
                                median(samples["sweep"]), bot, "s",
                                [f"python bot.py, {points} runs one after another: {bot:.2f} s "
                                 f"({bot / points * 1000:.0f} ms each)"]))
    finally:
        if worker is not None:
            worker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _version_zip(data_dir: Path, backtest_id: str) -> Path:
    """The zip of the version a backtest ran (the sweep's one upload)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{data_dir / 'blankly.db'}?mode=ro", uri=True, timeout=15)
    try:
        (name,) = conn.execute("SELECT v.zip_name FROM backtests b JOIN versions v ON v.id = b.version_id "
                               "WHERE b.id = ?", (backtest_id,)).fetchone()
    finally:
        conn.close()
    return data_dir / name
