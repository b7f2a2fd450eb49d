"""The panel in a kernel of a real Jupyter server: JupyterLab renames a notebook (Untitled.ipynb on
its first save) after the panel was shown, and the panel follows, as %%blankly_deploy does."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_jupyter import jupyter_server
from tests.fixtures_notebooks import write_notebook

SHOW = ("from blankly_magics.panel import BlanklyPanel\n"
        "panel = BlanklyPanel()\n"
        "print(panel.notebook)\n")
RELOAD = ("panel.cells.reload_button.click()\n"
          "print(panel.notebook, '|', panel.status_text, '|', panel.cells.notebook_label.value)\n")
BUILD = ("source = panel.cells.source()\n"
         "print(panel.notebook, '|', source.notebook_name, '|', panel.cells.notebook_label.value)\n")


@pytest.mark.slow
def test_the_panel_finds_its_notebook_again_after_a_rename(tmp_path) -> None:
    root = tmp_path / "root"
    write_notebook(root / "Untitled.ipynb", ["#| blankly\nprint('strategy', flush=True)\n"])
    with jupyter_server(root, tmp_path / "runtime") as jupyter:
        session = jupyter.start_session("Untitled.ipynb")
        assert Path(jupyter.run(session, SHOW).strip()) == (root / "Untitled.ipynb").resolve()

        jupyter.rename(session, "RSI quickstart.ipynb")  # "Rename and Save" on the first save
        notebook, status, label = jupyter.run(session, RELOAD).strip().split(" | ")
        assert Path(notebook) == (root / "RSI quickstart.ipynb").resolve()
        assert "no such notebook" not in status and "RSI quickstart.ipynb" in label

        jupyter.rename(session, "rsi.ipynb")  # renamed again; a build finds it without a reload
        notebook, name, label = jupyter.run(session, BUILD).strip().split(" | ")
        assert (Path(notebook).name, name) == ("rsi.ipynb", "rsi.ipynb") and "rsi.ipynb" in label
