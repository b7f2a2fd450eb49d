"""``%%blankly_deploy``: the notebook's cells and this cell's body, backtested or deployed live."""
from __future__ import annotations

import argparse
import html
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError

from ..results import BacktestResult
from ..sweep_result import SweepResult
from ..verbs import deploy as verb
from .errors import usage_errors
from .face import NotebookFace

DRY_RUN = "Dry run: nothing was uploaded. The script is `_.script` (all files: `_.files`; the zip: --save PATH)."


def deploy(magics: Any, args: argparse.Namespace, cell: str) -> Any:
    if not cell.strip():
        raise UsageError("the %%blankly_deploy cell is empty: its body is the entry point, e.g. strategy.start()")
    kind = "backtest" if args.backtest else "live"
    face = NotebookFace(magics, upload_label=f"{'backtest' if args.backtest else 'deploy'} upload")
    try:
        with usage_errors():
            backtest_args, python = verb.check_options(args, magics, args.backtest)
            if not args.dry_run:
                face.session()  # offline dry runs need no sign-in
            found = _locate(magics, args)
            source = verb.model_source(
                args, magics, found.cells, entry=cell, notebook_name=found.name,
                base_dir=found.path.parent if found.path else Path.cwd(), backtest_args=backtest_args, python=python,
            )
            source.stale_note, source.edited = found.note, found.edited  # said by the build, with its error
            value = verb.deploy(face, args, source, kind=kind, notebook=found.path)
    finally:
        face.close()
    if args.dry_run:
        _show_script(magics.shell, value)
    elif isinstance(value, (BacktestResult, SweepResult)):
        value.show_chart = magics.show_chart
    return value


def _locate(magics: Any, args: argparse.Namespace) -> Any:
    from .. import locate

    found = locate.locate(magics.shell, args.notebook or magics.notebook)
    print(found.describe())
    return found


def _show_script(shell: Any, bundle: Any) -> None:
    """The generated script, folded, in a notebook; the way to get it, anywhere."""
    if getattr(shell, "kernel", None) is None:
        print(DRY_RUN)
        return
    from IPython.display import display

    lines = bundle.script.count("\n") + 1
    folded = (
        f"<details><summary>{html.escape(bundle.main_script)} ({lines} lines)</summary>"
        f"<pre>{html.escape(bundle.script)}</pre></details><p>{html.escape(DRY_RUN)}</p>"
    )
    display({"text/plain": DRY_RUN, "text/html": folded}, raw=True)
