"""The shipped notebooks run in a real kernel (nbclient) and show what they promise."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures_notebooks import REPO

NOTEBOOKS = REPO / "notebooks"


def execute(name: str, home: Path) -> list[str]:
    """Run a shipped notebook from its own folder; return each code cell's text output."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for out in cell.outputs:
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
            parts.append(out.get("data", {}).get("text/html", ""))
        texts.append("".join(parts))
    return texts


@pytest.fixture
def server_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The embedded server's data in a tmp dir (the kernel inherits it); stopped afterwards."""
    from blankly_magics import embedded

    home = tmp_path / "blankly-home"
    monkeypatch.setenv("BLANKLY_MAGICS_HOME", str(home))
    monkeypatch.delenv("BLANKLY_DEPLOY_URL", raising=False)
    yield home
    embedded.stop_local_server(home)


@pytest.mark.slow
def test_quickstart_backtests_on_the_server_with_the_local_metrics(server_home: Path) -> None:
    outputs = execute("quickstart.ipynb", server_home)
    text = "\n".join(outputs)
    assert "Signed in to the local deployment server at http://127.0.0.1:" in text
    # The server's metrics, as the notebook printed them, equal the in-kernel backtest's.
    assert "metrics match: True" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("BLANKLY_METRICS "))
    metrics = json.loads(line.split(" ", 1)[1])
    assert {"Sharpe Ratio", "Cumulative Returns (%)", "Max Drawdown (%)"} <= set(metrics)
    assert re.search(r"Backtest \w+ completed", text)
    assert "data/GOOG-USD-1d.csv" in text  # the CSV the strategy reads was shipped in the zip


@pytest.mark.slow
def test_deploy_live_notebook_trades_on_the_replay_shows_its_orders_and_stops(server_home: Path) -> None:
    outputs = execute("deploy_live.ipynb", server_home)
    status, activity, logs, stop = outputs[-4], outputs[-3], outputs[-2], outputs[-1]
    assert "status   running" in status
    assert re.search(r"Last orders \(\d+\)", status), status  # status ends with the last orders
    # A real Blankly strategy on the replayed feed placed market orders, both ways, at replayed prices.
    assert re.search(r"buy\s+GOOG-USD\s+\d+(\.\d+)?\s+\d+(\.\d+)?\s+market\s+done", activity), activity
    assert re.search(r"sell\s+GOOG-USD\s+\d+(\.\d+)?\s+\d+(\.\d+)?\s+market\s+done", activity), activity
    assert "account value: " in activity and "<img alt='account value'" in activity
    assert re.search(r"price=\d+\.\d\d rsi=\d+\.\d", logs), logs
    assert "stopped" in stop
    # Nothing of the model is left running on this machine (its runs live under the server's home).
    import psutil

    def runs_there(proc: psutil.Process) -> bool:
        try:
            return proc.cwd().startswith(str(server_home))
        except (psutil.Error, OSError):
            return False

    server_pid = json.loads((server_home / "server.json").read_text())["pid"]
    left = [p for p in psutil.process_iter() if p.pid != server_pid and runs_there(p)]
    assert not left, [p.cmdline() for p in left]
