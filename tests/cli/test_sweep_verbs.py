"""``blankly-magics backtest --sweep``, ``sweeps``, ``sweep`` and ``cancel`` from a terminal, against a real server."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_notebooks import PRICES_CSV, RSI_ENTRY, RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, write_notebook
from tests.fixtures_server import ServerHandle, write_model_zip

SWEPT_LOGIC = RSI_LOGIC.replace("rsi[-1] < 30", "rsi[-1] < low").replace("rsi[-1] > 70", "rsi[-1] > high")
RSI_PERIOD = ("--start", "2010-06-01", "--end", "2013-03-01", "--initial", "USD=10000")


def blankly(server: ServerHandle, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BLANKLY_REFRESH_TOKEN=server.refresh_token("alice"))
    return subprocess.run([sys.executable, "-m", "blankly_magics", *args, "--url", server.url], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, env=env)


@pytest.fixture
def swept_notebook(tmp_path: Path) -> Path:
    shutil.copy(PRICES_CSV, tmp_path / PRICES_CSV.name)
    return write_notebook(tmp_path / "swept.ipynb", [
        RSI_IMPORTS, "#| blankly: parameters\nlow = 30\nhigh = 70\n", SWEPT_LOGIC, RSI_SETUP,
        "%%blankly_deploy --backtest\n" + RSI_ENTRY])


def test_the_sweep_verbs_list_show_and_cancel_a_sweep(private_home, local_server, tmp_path, swept_notebook):
    zip_path = write_model_zip(tmp_path / "sleepy.zip", manifest={"parameters": {"delay": 0}},
                               files={"bot.py": "import time\ntime.sleep(300)\n"})
    with open(zip_path, "rb") as fh:
        made = local_server.request("POST", "/sweep/create", files={"model": fh},
                                    data={"name": "sleepy", "grid": '{"delay": [1, 2, 3]}'}).json()
    sweep_id = made["sweepId"]
    listed = blankly(local_server, "sweeps")
    assert listed.returncode == 0, listed.stderr
    assert sweep_id in listed.stdout and "delay (3)" in listed.stdout and "maximize Sharpe Ratio" in listed.stdout
    cancelled = blankly(local_server, "cancel", sweep_id)
    assert cancelled.returncode == 0 and cancelled.stdout.startswith(f"Sweep {sweep_id}: cancelled (")
    shown = blankly(local_server, "sweep", sweep_id)
    assert shown.returncode == 1  # a sweep that did not complete, as a failed backtest
    assert shown.stdout.startswith(f"Sweep {sweep_id} cancelled: 3 points (3 cancelled)")
    assert f"More: blankly-magics sweep {sweep_id}" in shown.stdout and "%blankly" not in shown.stdout

    refused = blankly(local_server, "backtest", str(swept_notebook), "--sweep", "lowx=1,2")
    assert refused.returncode == 2 and "Uploading" not in refused.stdout
    assert refused.stderr == (
        "error: --sweep lowx: the parameters cell, cell 2 (`low = 30`), does not assign lowx (it assigns low, high)\n")
    live = blankly(local_server, "deploy", str(swept_notebook), "--sweep", "low=1,2")
    assert live.returncode == 2 and "unrecognized arguments: --sweep low=1,2" in live.stderr


@pytest.mark.slow
@pytest.mark.blankly
def test_a_sweep_from_a_terminal_prints_its_table_best_first(private_home, local_server, swept_notebook):
    done = blankly(local_server, "backtest", str(swept_notebook), *RSI_PERIOD, "--sweep", "low=25,30",
                   "--maximize", "Cumulative Returns (%)")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    sweep_id = re.search(r"Sweep (\w+) completed: 2 points \(2 completed\)", out).group(1)
    assert "Objective: maximize Cumulative Returns (%)" in out and "Best: low=" in out
    assert "sweep: 100%" in done.stderr and "2/2" in done.stderr  # the progress bar, on stderr
    assert sweep_id in blankly(local_server, "sweeps").stdout
