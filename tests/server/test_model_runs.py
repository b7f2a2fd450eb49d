"""The test that matters most: a notebook's RSI strategy becomes a zip that runs.

The zip is unpacked (with the server's safe_extract) into an empty folder and
its main script runs there with this interpreter (blankly + numpy<2), offline,
on the shipped GOOG CSV, printing Blankly's metrics.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from blankly_magics.export import build_bundle
from blankly_magics.server.zipcheck import inspect_model_zip, safe_extract
from tests.fixtures_notebooks import RSI_ENTRY

pytestmark = pytest.mark.slow


def run_model(zip_path, dest):
    info = inspect_model_zip(zip_path)
    root = safe_extract(zip_path, dest)
    workdir = root / info.working_directory
    env = {k: v for k, v in os.environ.items() if k not in ("BACKTESTING", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, info.main_script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_rsi_notebook_zip_runs_and_prints_blankly_metrics(rsi_notebook, tmp_path):
    bundle = build_bundle(rsi_notebook, entry=RSI_ENTRY)
    zip_path = bundle.write_zip(tmp_path / "model.zip")
    proc = run_model(zip_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Blankly Metrics" in out
    assert "Sharpe Ratio" in out and "Cumulative Returns" in out
    assert "Traceback" not in proc.stderr


def test_deploy_cell_saved_in_the_notebook_runs_from_the_cli_zip(rsi_notebook, tmp_path):
    """The same, through the terminal: the notebook's own %%blankly_deploy cell is the entry."""
    from tests.fixtures_notebooks import rsi_cells, write_notebook

    nb = write_notebook(rsi_notebook, rsi_cells() + ["%%blankly_deploy --backtest\n" + RSI_ENTRY])
    zip_path = tmp_path / "cli-model.zip"
    build = subprocess.run(
        [sys.executable, "-m", "blankly_magics", "build", str(nb), "--output", str(zip_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, build.stderr
    with zipfile.ZipFile(zip_path) as zf:
        script = zf.read("model/bot.py").decode()
    assert "# %% [entry point] the %%blankly_deploy cell (cell 6)" in script
    proc = run_model(zip_path, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Sharpe Ratio" in proc.stdout and "Cumulative Returns" in proc.stdout
