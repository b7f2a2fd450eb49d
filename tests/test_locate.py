"""Finding the running notebook: explicit paths, VS Code, the Jupyter server's
sessions, __session__, and the kernel's input history; and saying when the
file on disk lags what the kernel ran."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from blankly_magics import locate
from tests.fixtures_jupyter import jupyter_server
from tests.fixtures_notebooks import RSI_ENTRY, RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, rsi_cells, write_notebook
from tests.magics_shell import TestingShell


@pytest.fixture
def shell():
    return TestingShell.fresh()


@pytest.fixture(autouse=True)
def no_outside_hints(monkeypatch, tmp_path):
    """Isolate from the machine: no env path, no running Jupyter servers."""
    monkeypatch.delenv("BLANKLY_NOTEBOOK_PATH", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))


def test_explicit_path_wins_and_a_missing_one_is_an_error(shell, rsi_notebook, tmp_path, monkeypatch):
    other = write_notebook(tmp_path / "other.ipynb", ["x = 1"])
    shell.user_ns["__vsc_ipynb_file__"] = str(other)
    assert locate.notebook_path(shell, str(rsi_notebook)) == (rsi_notebook.resolve(), "--notebook")
    monkeypatch.chdir(tmp_path)
    assert locate.notebook_path(shell, "rsi.ipynb") == (rsi_notebook.resolve(), "--notebook")
    with pytest.raises(locate.LocateError, match=r"notebook not found: nope.ipynb \(from --notebook\)"):
        locate.notebook_path(shell, "nope.ipynb")


def test_env_variable_then_vscode(shell, rsi_notebook, tmp_path, monkeypatch):
    other = write_notebook(tmp_path / "vsc.ipynb", ["x = 1"])
    shell.user_ns["__vsc_ipynb_file__"] = str(other)
    monkeypatch.setenv("BLANKLY_NOTEBOOK_PATH", str(rsi_notebook))
    assert locate.notebook_path(shell) == (rsi_notebook.resolve(), "BLANKLY_NOTEBOOK_PATH")
    monkeypatch.delenv("BLANKLY_NOTEBOOK_PATH")
    assert locate.notebook_path(shell) == (other.resolve(), "VS Code")


def test_session_name_relative_to_the_working_folder(shell, rsi_notebook, monkeypatch):
    monkeypatch.chdir(rsi_notebook.parent)
    shell.user_ns["__session__"] = "rsi.ipynb"
    assert locate.notebook_path(shell) == (rsi_notebook.resolve(), "__session__")
    shell.user_ns["__session__"] = "gone.ipynb"  # renamed since the kernel started
    assert locate.notebook_path(shell) == (None, "kernel history")


def test_history_keeps_code_drops_magics_and_deploy_cells(shell):
    shell.run_as_cells(
        "%load_ext autoreload",
        "x = 1",
        "# setup\n%config InteractiveShell.ast_node_interactivity = 'last'",
        "y = x + 1",
        "%%capture\nz = 3",
        "x = 1",  # re-run of the same text
    )
    # the cell being run when the magic looks is in the history too
    shell.history_manager.input_hist_raw.append("%%blankly_deploy --backtest\nstrategy.start()")
    assert locate.history_sources(shell) == ["x = 1", "y = x + 1", "%%capture\nz = 3"]
    found = locate.locate(shell)
    assert found.path is None and found.source == "kernel history"
    assert [c.source for c in found.cells] == ["x = 1", "y = x + 1", "%%capture\nz = 3"]
    assert found.describe() == "No notebook file found (pass --notebook PATH): using the kernel's input history (3 cells)"


def test_disk_differs_when_a_run_edit_was_not_saved(shell, rsi_notebook):
    edited = RSI_LOGIC.replace("rsi[-1] < 30", "rsi[-1] < 25")
    shell.record_as_cells("%load_ext blankly_magics", RSI_IMPORTS, edited, RSI_SETUP)
    found = locate.locate(shell, str(rsi_notebook))
    assert found.path == rsi_notebook.resolve()
    assert found.note == locate.STALE_NOTE
    assert found.edited == (3,)  # the logic cell, the fourth in JupyterLab (its markdown cell counts)
    assert [c.source for c in found.cells if c.cell_type == "code"][2] == RSI_LOGIC  # cells come from the file


def test_disk_matches_when_the_saved_version_was_run_last(shell, rsi_notebook):
    draft = RSI_LOGIC.replace("rsi[-1] < 30", "rsi[-1] < 25")
    shell.record_as_cells("%load_ext blankly_magics", RSI_IMPORTS, draft, RSI_LOGIC, RSI_SETUP)
    shell.history_manager.input_hist_raw.append("%%blankly_deploy --backtest\n" + RSI_ENTRY)
    assert locate.locate(shell, str(rsi_notebook)).note is None
    # a scratch cell that is nowhere on disk also means the file differs from what ran
    shell.record_as_cells("print(strategy)")
    scratch = locate.locate(shell, str(rsi_notebook))
    assert scratch.note == locate.STALE_NOTE and scratch.edited == ()  # a new cell: no saved cell was edited


def test_no_history_no_note(shell, rsi_notebook):
    found = locate.locate(shell, str(rsi_notebook))
    assert found.note is None
    assert len(found.cells) == len(rsi_cells())
    assert found.describe() == f"Notebook: {rsi_notebook.resolve()} (found via --notebook)"


def test_dead_and_garbage_server_files_are_ignored(tmp_path):
    runtime = tmp_path / "rt"
    runtime.mkdir()
    (runtime / "jpserver-1.json").write_text(json.dumps({"url": "http://127.0.0.1:1/", "pid": 2**22 + 12345}))
    (runtime / "jpserver-2.json").write_text("{not json")
    (runtime / "jpserver-3.json").write_text(json.dumps({"url": "http://127.0.0.1:1/", "pid": os.getpid()}))
    servers = locate.running_servers(str(runtime))
    assert [s["pid"] for s in servers] == [os.getpid()]
    # alive but not answering: no path, no exception
    assert locate.path_from_sessions("some-kernel", servers, timeout=0.5) is None


# ------------------------------------------------------------ a real Jupyter server and kernel


@pytest.mark.slow
def test_kernel_finds_its_notebook_through_the_server_even_after_a_rename(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "rsi.ipynb", rsi_cells())
    with jupyter_server(root, tmp_path / "runtime") as jupyter:
        session = jupyter.start_session("rsi.ipynb")
        probe = (
            "from blankly_magics import locate\n"
            "p, how = locate.notebook_path(get_ipython())\n"
            "print(p, '|', how, '|', locate.kernel_id(get_ipython()))\n"
        )
        path, how, kid = jupyter.run(session, probe).strip().split(" | ")
        assert (Path(path), how, kid) == ((root / "rsi.ipynb").resolve(), "the Jupyter server", session["kernel"]["id"])

        jupyter.rename(session, "renamed.ipynb")  # as JupyterLab does: the file, then the session
        path, how, _ = jupyter.run(session, probe).strip().split(" | ")
        assert (Path(path), how) == ((root / "renamed.ipynb").resolve(), "the Jupyter server")
        session_name = jupyter.run(session, "print(__session__)").strip()
        assert session_name.endswith("rsi.ipynb")  # what __session__ would have said: stale
