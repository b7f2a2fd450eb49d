"""Build: the notebook's code cells to tick, the entry point, extra files, and Preview."""
from __future__ import annotations

import ast
import html
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import ipywidgets as W

from ..formats import size_text
from ..workflow import Feedback, ModelSource
from ..workflow.build import preview_cells, read_notebook
from .section import Section
from .widgets import labelled, row

MAX_FILES = 200  # files offered for "include"; a folder with more is not a project folder
SKIP_DIRS = {".git", ".ipynb_checkpoints", "__pycache__", "price_caches", ".idea", ".vscode", "node_modules"}
ENTRY_TEMPLATE = "if blankly.is_deployed:\n    {name}.start()\n"


def strategy_name(sources: Sequence[str]) -> Optional[str]:
    """The variable the cells bind to ``blankly.Strategy(...)``, for the entry point."""
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = node.value.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                target = node.targets[0]
                if called == "Strategy" and isinstance(target, ast.Name):
                    return target.id
    return None


def folder_files(folder: Path) -> list[str]:
    """Files (relative, '/'-separated) a model may include: the folder and its subfolders
    one level down, no notebooks, nothing hidden, no caches. Pruned while walking, so a
    notebook in a big folder (a home directory) costs little."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS) if not rel.parts else []
        for name in sorted(files):
            if name.startswith(".") or name.endswith(".ipynb"):
                continue
            found.append((rel / name).as_posix())
            if len(found) >= MAX_FILES:
                return found
    return found


class CellsSection(Section):
    name = "cells"
    title = "Cells to export"
    rank = 10

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.notebook: Optional[Path] = panel.given_notebook
        self.cells: list[Any] = []
        self.stale_note: Optional[str] = None  # set when the file on disk lags what the kernel ran
        self.edited: tuple[int, ...] = ()  # cells edited (and run) since the notebook was saved
        self.boxes: list[W.Checkbox] = []
        self.cells_box = W.VBox(layout=W.Layout(max_height="190px", overflow="hidden auto", width="auto",
                                                border="1px solid var(--jp-border-color2,#ddd)", padding="2px 6px"))
        self.reload_button = W.Button(description="Reload cells", icon="refresh", tooltip="Read the notebook again",
                                      layout=W.Layout(width="auto", flex="0 0 auto"))
        self.notebook_label = W.HTML(layout=W.Layout(flex="1 1 auto", min_width="0"))
        self.entry_input = labelled(W.Textarea(rows=3, placeholder="code run last, e.g. strategy.start()"),
                                    "Entry point")
        self.entry_input.add_class("blankly-panel-entry")
        self.files_select = labelled(W.SelectMultiple(options=[], rows=3), "Include")
        self.preview_button = W.Button(description="Preview", icon="eye")
        self.preview_button.add_class("blankly-panel-preview")
        self.reload_button.on_click(lambda _: self.reload())
        self.preview_button.on_click(lambda _: panel.submit(self.preview))
        self.reload()

    def form(self) -> list[W.Widget]:
        return [row(self.notebook_label, self.reload_button), self.cells_box, self.entry_input, self.files_select]

    def actions(self) -> list[W.Widget]:
        return [self.preview_button]

    def buttons(self) -> list[W.Button]:
        return [self.reload_button, self.preview_button]

    @property
    def base_dir(self) -> Optional[Path]:
        return self.notebook.parent if self.notebook else None

    @property
    def selected(self) -> list[int]:
        return [box.cell_index for box in self.boxes if box.value]

    # ------------------------------------------------------------ reading the notebook

    def reload(self) -> None:
        """Read the notebook's cells and offer its code cells, ticked per the export rules."""
        from .frame import error_line

        self.cells, where, problem = [], None, None
        self.stale_note, self.edited = None, ()
        try:
            if self.panel.given_notebook is not None:
                self.cells, where = read_notebook(self.panel.given_notebook), self.panel.given_notebook
            else:  # found again each time: JupyterLab renames Untitled.ipynb on its first save
                self.cells, where = self._locate()
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            problem = error_line(exc)
        self._offer(problem)
        self._label(where)
        ticked = set(self.selected)
        if not self.entry_input.value.strip():
            name = strategy_name([cell.source for cell in self.cells if cell.index in ticked])
            self.entry_input.value = ENTRY_TEMPLATE.format(name=name) if name else ""
        # Data files the code names are taken by the build itself; this list is for the others.
        self.files_select.options = folder_files(self.base_dir) if self.base_dir else []
        if problem:
            self.panel.say(problem, "error")

    def _locate(self) -> tuple[list[Any], Any]:
        from IPython import get_ipython

        from .. import locate

        found = locate.locate(get_ipython(), self.panel.config.notebook)
        self.notebook = found.path
        self.stale_note = found.note
        self.edited = found.edited
        return list(found.cells), found.path or "the kernel's input history"

    def refind(self) -> None:
        """Before a build: the notebook where it is now (renamed since the cells were read?), as
        ``%%blankly_deploy`` finds it on each run; the cells offered stay as ticked."""
        from IPython import get_ipython

        from .. import locate

        if self.panel.given_notebook is not None or self.notebook is None:
            return
        try:
            path, _ = locate.notebook_path(get_ipython(), self.panel.config.notebook)
        except locate.LocateError:
            return
        if path is not None and path != self.notebook:
            self.notebook = path
            self._label(path)

    def _offer(self, problem: Optional[str]) -> None:
        boxes = []
        for choice in preview_cells(self.cells) if self.cells else []:
            box = W.Checkbox(value=bool(choice.exported), indent=False,
                             description=choice.label,
                             description_allow_html=False, layout=W.Layout(width="auto", height="24px"))
            box.cell_index = choice.index
            box.tooltip = str(choice.reason or "")
            boxes.append(box)
        for old in self.boxes:
            old.close()
        self.boxes = boxes
        self.cells_box.children = boxes or [W.HTML(f"<i>{html.escape(problem or 'No code cells found.')}</i>")]

    def _label(self, where: Any) -> None:
        if isinstance(where, Path):
            # One line, cut with an ellipsis when the folder is long; the whole path on hover.
            text = (f"<div title='{html.escape(str(where))}' style='white-space:nowrap;overflow:hidden;"
                    f"text-overflow:ellipsis'>From <code>{html.escape(where.name)}</code> in "
                    f"<code>{html.escape(str(where.parent))}</code></div>")
        else:
            text = (f"From {html.escape(where)}" if where
                    else "<i>Notebook not found: show_panel(notebook='path.ipynb')</i>")
        if self.stale_note:
            text += f"<br><span style='color:#9a6700'>{html.escape(self.stale_note)}</span>"
        self.notebook_label.value = text

    # ------------------------------------------------------------ building

    def source(self, backtest_args: Optional[dict] = None, python: Optional[str] = None) -> ModelSource:
        """What the ticked cells, the entry point and the picked files build."""
        from .frame import PanelError

        if not self.cells:
            raise PanelError("No notebook cells: save the notebook and click Reload cells "
                             "(or show the panel with show_panel(notebook='path.ipynb'))")
        if not self.selected:
            raise PanelError("No cells ticked: tick the cells that make the strategy")
        self.refind()
        base = self.base_dir
        picked = [base / name for name in self.files_select.value] if base else []
        return ModelSource(
            self.cells, entry=self.entry_input.value.strip() or None,
            notebook_name=self.notebook.name if self.notebook else None, base_dir=base,
            include=picked + list(self.panel.config.include),  # plus %config BlanklyMagics.include
            python_version=python, backtest_args=backtest_args, select=self.selected, show_summary=False,
            stale_note=self.stale_note, edited=self.edited,
        )

    def preview(self) -> None:
        panel = self.panel
        panel.say("Building\u2026", "work")
        args = panel.backtest.args()
        bundle = self.source(args or None, panel.target.python_dd.value).build(Feedback())
        panel.clear_results()
        panel.results.append_stdout(bundle.summary().rstrip() + "\n")
        panel.say(f"Preview: {len(bundle.files)} files, {size_text(bundle.total_size)}; nothing uploaded.", "ok")
