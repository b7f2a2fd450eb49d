"""``blankly-magics build NOTEBOOK -o model.zip``: the model zip, built offline."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import Face
from ..errors import BlanklyError
from ..workflow import ModelSource, save_zip
from .deploy import read_entry

HELP = "build a Blankly model zip from a notebook"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the notebook (.ipynb, nbformat 4) holding the strategy cells")
    p.add_argument("-o", "--output", required=True, metavar="ZIP",
                   help="where to write the model zip (written atomically; nothing is written on error)")
    p.add_argument("--entry", metavar="FILE",
                   help="a file whose code becomes the entry point, run under `if __name__ == \"__main__\":` "
                   "(default: the body of the notebook's %%%%blankly_deploy cell, if it has one)")
    p.add_argument("--include", action="append", default=[], metavar="PATH",
                   help="a file or folder to put in the model (relative to the notebook's folder); repeatable. "
                   "Data files the code names, like \"./prices.csv\", and local modules it imports are included anyway")
    p.add_argument("--requirements", metavar="FILE",
                   help="a requirements file merged into the inferred requirements.txt (its lines win)")
    p.add_argument("--python", metavar="X.Y", dest="python_version",
                   help="python_version for blankly.json (default: this interpreter's, e.g. 3.11)")
    p.add_argument("--allow-undefined", action="append", default=[], metavar="NAME",
                   help="a name made at run time (by a library, or setattr on the module) that the undefined-name "
                   "check lets pass; repeatable (in the notebook: a line `#| blankly: allow-undefined NAME`)")
    p.add_argument("--allow-keys", action="store_true",
                   help="ship keys.json even when it holds real exchange keys (left out by default): they become "
                   "part of an immutable version; `keys import keys.json` stores them on the server instead")
    p.add_argument("--base-dir", metavar="DIR",
                   help="the model folder that relative paths are read from (default: the notebook's folder)")
    p.add_argument("--cells", metavar="N,N,...",
                   help="export exactly these cells, numbered from 1 as JupyterLab shows them (markdown cells "
                   "count), ignoring the tags and markers")
    p.add_argument("--type", choices=("strategy", "screener"), default="strategy", dest="model_type",
                   help="the model type written to blankly.json (default: strategy)")
    p.add_argument("--schedule", metavar="CRON", help="a screener's cron schedule for blankly.json")
    p.add_argument("--backtest-args", metavar="JSON",
                   help='the backtest kwargs for blankly.json, e.g. \'{"to": "1y"}\' (default: {"to": "1y"})')


def _cells(text: str) -> list[int]:
    """``--cells 1,3`` (numbered from 1, as JupyterLab shows them) as the export's positions from 0."""
    try:
        numbers = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        numbers = [0]
    if not numbers or min(numbers) < 1:
        raise BlanklyError(f"--cells takes comma-separated cell numbers from 1, like 1,3,4 (got {text!r})")
    return [n - 1 for n in numbers]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BlanklyError(f"--backtest-args is not valid JSON: {exc}") from None


def run(face: Face, args: argparse.Namespace) -> None:
    output = Path(args.output)
    if output.is_dir():
        raise BlanklyError(f"--output {output} is a folder; give the zip file's path")
    source = ModelSource(
        args.notebook, entry=read_entry(args.entry), include=args.include, requirements=args.requirements,
        python_version=args.python_version, base_dir=Path(args.base_dir) if args.base_dir else None,
        backtest_args=_json(args.backtest_args) if args.backtest_args else None,
        select=_cells(args.cells) if args.cells else None,
        extra=dict(allow_keys=args.allow_keys, allow_undefined=args.allow_undefined, model_type=args.model_type, schedule=args.schedule),
    )
    bundle = source.build(face.feedback)
    written = save_zip(bundle, output, option="--output")
    face.feedback.note(f"Wrote {written} ({written.stat().st_size} bytes, sha256 {bundle.sha256})")
