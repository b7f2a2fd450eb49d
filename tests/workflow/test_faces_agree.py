"""The magics and the panel run the same flows, so they end alike and say the same.

A backtest stopped once its upload was sent (Ctrl-C below the cell, Cancel in the
panel) leaves one model, which the next run adds a version to; a backtest from a
notebook folder that cannot be written shows its result, with one note that the
model could not be remembered. Real server, real shell, real widgets.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from blankly_magics.config import BlanklyConfig

from ..fixtures_notebooks import PRICES_CSV, RSI_ENTRY, rsi_cells, write_notebook
from ..fixtures_panel import notes, results_html
from ..fixtures_server import ServerHandle
from tests.server.test_faults import _interrupt_main_when, fault_proxy  # noqa: F401 (fixture)

TRIVIAL = ["#| blankly\nimport time\nprint('model ran', flush=True)\n"]
STOPPED = "Interrupted after the upload was sent"
UNREMEMBERED = "Note: could not remember the model next to the notebook (Read-only file system)"
RSI_FIELDS = {"start": "2010-06-01", "end": "2013-03-01", "initial": "USD=10000"}


def models_named(server: ServerHandle, user: str, name: str) -> list[str]:
    """Ids of ``user``'s models named ``name`` that hold at least one stored version."""
    return [m["modelId"] for m in server.request("GET", "/model/status", user=user).json()
            if m["name"] == name and versions(server, user, m["modelId"])]


def versions(server: ServerHandle, user: str, model_id: str) -> list[str]:
    answer = server.request("GET", "/model/versions", user=user, params={"modelId": model_id}).json()
    return [v["versionId"] for v in answer]


def line_starting(lines: list[str], start: str) -> str:
    (line,) = [line for line in lines if line.startswith(start)]
    return line


def said_version(line: str) -> str:
    found = re.search(r", version (\w+);", line)
    assert found, line
    return found.group(1)


def when(check: Callable[[], Any], then: Callable[[], None], timeout: float = 120) -> threading.Thread:
    """Run ``then()`` on another thread once ``check()`` holds (a click while the panel works)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                then()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def sign_in_panel(panel: Any, url: str, token: str) -> None:
    panel.sign_in.local_checkbox.value = False
    panel.sign_in.url_input.value = url
    panel.sign_in.token_input.value = token
    panel.sign_in.sign_in_button.click()
    assert panel.status_text == "\u2714 Ready.", panel.status_text


def test_a_backtest_stopped_after_its_upload_ends_alike_in_the_magics_and_the_panel(
    cells, make_panel, panel_home, local_server, fault_proxy, tmp_path, monkeypatch  # noqa: F811
) -> None:
    # The magics (alice): Ctrl-C once the server stored the upload, its answer held back.
    proxy = fault_proxy(local_server)
    monkeypatch.setenv("ALICE_TOKEN", local_server.refresh_token("alice"))
    cells.secrets.add(local_server.refresh_token("alice"))
    cells.run(f"%blankly_login --url {proxy.url} --token-env ALICE_TOKEN")
    notebook = write_notebook(tmp_path / "magics" / "big.ipynb", TRIVIAL)
    cell = f"%%blankly_deploy --backtest --no-wait --notebook {notebook}\nprint('entry')"
    proxy.set_mode("hold")
    watcher = _interrupt_main_when(lambda: models_named(local_server, "alice", "big"))
    out = cells.run(cell)
    watcher.join(5)
    (magic_model,) = models_named(local_server, "alice", "big")
    magic_said = line_starting(out.splitlines(), STOPPED)
    proxy.set_mode("pass")
    again = cells.run(cell)
    assert f"Uploading to model big ({magic_model})" in again, again
    assert models_named(local_server, "alice", "big") == [magic_model]  # no second model
    magic_versions = versions(local_server, "alice", magic_model)
    assert len(magic_versions) == 2

    # The panel (bob, the same notebook in its own folder): Cancel once the server stored the upload.
    panel_proxy = fault_proxy(local_server)
    panel = make_panel(write_notebook(tmp_path / "panel" / "big.ipynb", TRIVIAL), config=BlanklyConfig(wait=False))
    sign_in_panel(panel, panel_proxy.url, local_server.refresh_token("bob"))
    panel_proxy.set_mode("hold")
    watcher = when(lambda: models_named(local_server, "bob", "big"), panel.cancel_button.click)
    panel.backtest.backtest_button.click()
    watcher.join(5)
    (panel_model,) = models_named(local_server, "bob", "big")
    panel_said = line_starting(notes(panel), STOPPED)
    assert panel.status_text == panel_said  # the status line says it too
    panel_proxy.set_mode("pass")
    panel.backtest.backtest_button.click()
    assert f"Uploading to model big ({panel_model})" in "\n".join(notes(panel)), notes(panel)
    assert models_named(local_server, "bob", "big") == [panel_model]
    panel_versions = versions(local_server, "bob", panel_model)
    assert len(panel_versions) == 2

    # The same words, but for the ids; the version named is the one the stopped upload stored.
    magic_version, panel_version = said_version(magic_said), said_version(panel_said)
    assert magic_version in magic_versions and panel_version in panel_versions
    assert panel_said.replace(panel_model, "M").replace(panel_version, "V") == \
        magic_said.replace(magic_model, "M").replace(magic_version, "V")
    assert magic_said == (f"{STOPPED}: the server stored it as model big ({magic_model}), version {magic_version}; "
                          f"the next run of this notebook adds a version to that model. "
                          f"Check it with %blankly backtests --model {magic_model}")


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A notebook folder (the RSI notebook and its prices) that cannot be written: a read-only bind
    mount, since root's writes pass any chmod."""
    folder = tmp_path / "read-only"
    write_notebook(folder / "rsi.ipynb", rsi_cells())
    (folder / PRICES_CSV.name).write_bytes(PRICES_CSV.read_bytes())
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({bound.stderr.strip()}): needs root with CAP_SYS_ADMIN")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.slow
def test_a_backtest_from_a_read_only_folder_shows_its_result_alike_in_the_magics_and_the_panel(
    cells, alice, make_panel, panel_home, read_only_folder  # noqa: F811
) -> None:
    notebook = read_only_folder / "rsi.ipynb"
    with pytest.raises(OSError):
        (read_only_folder / "probe").write_text("x")  # the folder really cannot be written

    out = cells.run(f"%%blankly_deploy --backtest --notebook {notebook} --initial USD=10000 "
                    f"--start 2010-06-01 --end 2013-03-01\n{RSI_ENTRY}")
    shown = cells.last
    assert shown.status == "completed" and "Sharpe Ratio" in out, out
    assert UNREMEMBERED in out.splitlines()

    panel = make_panel(notebook)
    sign_in_panel(panel, alice.url, alice.refresh_token("bob"))
    for field, value in RSI_FIELDS.items():
        getattr(panel.backtest, f"{field}_input").value = value
    panel.backtest.backtest_button.click()
    assert "completed" in panel.status_text, panel.status_text
    assert UNREMEMBERED in notes(panel)
    assert "Sharpe Ratio" in results_html(panel)
    assert panel.last_result.metrics == shown.metrics  # the same strategy on the same data
    assert not list(read_only_folder.glob(".blankly_magics*"))
