"""The workflow layer as a script uses it: plain Python, the real server, nothing of IPython."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from blankly_magics import session
from blankly_magics.workflow import Feedback, Memory, ModelSource, RunRequest, Target, run
from blankly_magics.workflow.target import remember

from ..fixtures_notebooks import RSI_BACKTEST_ARGS, RSI_ENTRY


def test_the_workflow_and_the_cli_import_neither_ipython_nor_widgets(tmp_path):
    code = ("import importlib, pkgutil, sys\n"
            "import blankly_magics.workflow as w, blankly_magics.verbs as v, blankly_magics.cli\n"
            "for package in (w, v):\n"
            "    for info in pkgutil.iter_modules(package.__path__):\n"
            "        importlib.import_module(f'{package.__name__}.{info.name}')\n"
            "import blankly_magics.session, blankly_magics.locate, blankly_magics.results\n"
            "print(sorted(m for m in ('IPython', 'ipywidgets', 'ipykernel') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_a_notebook_remembers_its_model_and_settles_its_unanswered_upload(tmp_path):
    notebook = tmp_path / "rsi.ipynb"
    memory = Memory(notebook, "http://127.0.0.1:8127")
    assert memory.model() is None and memory.pending() is None
    memory.remember_pending("rsi", None, "ab" * 32)
    assert memory.pending()["sha256"] == "ab" * 32
    memory.remember_model("m1", "p1", "rsi")
    assert memory.model()["modelId"] == "m1" and memory.pending() is None  # the answer settles it
    other = Memory(notebook, "http://127.0.0.1:9000")  # another server: its own entry
    assert other.model() is None
    stored = json.loads((tmp_path / ".blankly_magics.json").read_text())
    assert list(stored["models"]) == ["http://127.0.0.1:8127|rsi.ipynb"]


def test_a_folder_that_cannot_be_written_costs_a_note_not_the_run(tmp_path):
    said: list[str] = []
    gone = Memory(tmp_path / "no-such-folder" / "rsi.ipynb", "http://127.0.0.1:8127")
    remember(gone, Target("m1", None, "rsi"), Feedback(note=said.append))
    assert said == ["Note: could not remember the model next to the notebook (No such file or directory)"]


@pytest.mark.slow
def test_a_script_backtests_a_notebook_and_its_next_run_adds_a_version(private_home, local_server, rsi_notebook,
                                                                         monkeypatch):
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", local_server.refresh_token("alice"))
    signed = session.sign_in(local_server.url)
    try:
        said: list[str] = []
        source = ModelSource(rsi_notebook, entry=RSI_ENTRY, backtest_args=RSI_BACKTEST_ARGS)
        result = run(signed, RunRequest(kind="backtest", notebook=rsi_notebook), source, Feedback(note=said.append))
        assert result.ok and "Sharpe Ratio" in result.metrics, said
        assert said[0].startswith("Model from rsi.ipynb: 3 cell(s) taken (marked)")
        assert f"Uploading to a new model 'rsi' on {local_server.url} for a backtest..." in said
        again = run(signed, RunRequest(kind="backtest", notebook=rsi_notebook, wait=False), source, Feedback())
        assert again.model_id == result.model_id and again.backtest_id != result.backtest_id
    finally:
        session.sign_out(revoke=False)
