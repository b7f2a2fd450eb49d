"""The whole path in a real kernel: a notebook executed by nbclient loads the
extension, signs in to the embedded local server, defines the RSI strategy and
backtests it with %%blankly_deploy; the saved outputs hold the metrics."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.fixtures_notebooks import RSI_ENTRY, rsi_cells, write_notebook

DEPLOY = "%%blankly_deploy --backtest --initial USD=10000 --start 2010-06-01 --end 2013-03-01 -m 'from nbclient'\n"


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "\n".join(str(data.get(kind, "")) for kind in ("text/plain", "text/html"))


@pytest.mark.slow
def test_notebook_backtests_through_the_embedded_server(tmp_path, monkeypatch, prices_csv):
    import nbformat
    from nbclient import NotebookClient

    from blankly_magics import embedded
    from blankly_magics.export.manifest import default_backtest_bytes, default_settings_bytes

    home = tmp_path / "magics-home"
    folder = tmp_path / "project"
    folder.mkdir()
    # What a Blankly project folder holds: the prices, and the settings blankly reads at import.
    shutil.copy(prices_csv, folder / prices_csv.name)
    (folder / "settings.json").write_bytes(default_settings_bytes())
    (folder / "backtest.json").write_bytes(default_backtest_bytes())
    # The kernel inherits these: a private data home for the embedded server, no outside hints.
    monkeypatch.setenv("BLANKLY_MAGICS_HOME", str(home))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    for name in ("BLANKLY_DEPLOY_URL", "BLANKLY_REFRESH_TOKEN", "BLANKLY_NOTEBOOK_PATH", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)

    cells = ["%load_ext blankly_magics", "%blankly_login", *rsi_cells(), DEPLOY + RSI_ENTRY,
             "res = _\nprint(res.status, len(res.trades), sorted(res.metrics)[:3])"]
    path = write_notebook(folder / "rsi.ipynb", cells)
    nb = nbformat.read(str(path), as_version=4)
    try:
        NotebookClient(
            nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(folder)}}
        ).execute()
    finally:
        stopped = embedded.stop_local_server(home)
    assert stopped  # the notebook started it; teardown stopped it

    outputs = ["".join(_text(o) for o in cell.get("outputs", [])) for cell in nb.cells]
    login = outputs[1]
    assert login.startswith("Signed in to the local deployment server at http://127.0.0.1:") and login.endswith(
        " as local\n"
    )
    deploy = outputs[-2]
    assert "No notebook file found (pass --notebook PATH): using the kernel's input history" in deploy
    assert "Model from notebook cells: 3 cell(s) taken (marked)" in deploy
    assert "completed: account value 10,000 ->" in deploy
    for metric in ("Sharpe Ratio", "Compound Annual Growth Rate (%)", "Max Drawdown (%)", "Volatility"):
        assert metric in deploy
    assert "<table class='blankly-metrics'>" in deploy and "data:image/png;base64," in deploy
    status_line = [o for o in nb.cells[-2].outputs if o.get("output_type") == "display_data"
                   and "Backtest " in o.get("data", {}).get("text/plain", "")]
    assert status_line and status_line[-1]["data"]["text/plain"].split(": ")[1].startswith("completed")
    status, trades, _ = outputs[-1].split(" ", 2)
    assert status == "completed" and int(trades) > 0

    token = (home / "local-token").read_text().strip()
    assert token and all(token not in text for text in outputs)
    assert json.loads(path.read_text())["cells"]  # the notebook file itself was left alone
