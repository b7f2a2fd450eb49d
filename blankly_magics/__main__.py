"""``python -m blankly_magics build NOTEBOOK.ipynb --output model.zip`` (also ``blankly-magics``).

Subcommands live in ``COMMANDS``: each is (help, add_arguments, run); ``run``
returns the exit code. Expected failures print one message to stderr and exit
with 2; nothing is written then.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

EXIT_PROBLEM = 2

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the notebook (.ipynb, nbformat 4) holding the strategy cells")
    p.add_argument(
        "-o", "--output", required=True, metavar="ZIP",
        help="where to write the model zip (written atomically; nothing is written on error)",
    )
    p.add_argument(
        "--entry", metavar="FILE",
        help="a file whose code becomes the entry point, run under `if __name__ == \"__main__\":` "
        "(default: the body of the notebook's %%%%blankly_deploy cell, if it has one)",
    )
    p.add_argument(
        "--include", action="append", default=[], metavar="PATH",
        help="a file or folder to put in the model (relative to the notebook's folder); repeatable. "
        "Data files the code names, like \"./prices.csv\", and local modules it imports are included anyway",
    )
    p.add_argument(
        "--requirements", metavar="FILE",
        help="a requirements file merged into the inferred requirements.txt (its lines win)",
    )
    p.add_argument(
        "--python", metavar="X.Y", dest="python_version",
        help="python_version for blankly.json (default: this interpreter's, e.g. 3.11)",
    )
    p.add_argument(
        "--allow-undefined", action="append", default=[], metavar="NAME",
        help="a name made at run time (by a library, or setattr on the module) that the undefined-name check "
        "lets pass; repeatable (in the notebook: a line `#| blankly: allow-undefined NAME`)",
    )
    p.add_argument(
        "--allow-keys", action="store_true",
        help="ship keys.json even when it holds real exchange keys (left out by default)",
    )
    p.add_argument(
        "--base-dir", metavar="DIR",
        help="the model folder that relative paths are read from (default: the notebook's folder)",
    )
    p.add_argument(
        "--cells", metavar="N,N,...",
        help="export exactly these cells, numbered from 1 as JupyterLab shows them (markdown cells count), "
        "ignoring the tags and markers",
    )
    p.add_argument("--type", choices=("strategy", "screener"), default="strategy", dest="model_type",
                   help="the model type written to blankly.json (default: strategy)")
    p.add_argument("--schedule", metavar="CRON", help="a screener's cron schedule for blankly.json")
    p.add_argument(
        "--backtest-args", metavar="JSON",
        help='the backtest kwargs for blankly.json, e.g. \'{"to": "1y"}\' (default: {"to": "1y"})',
    )


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_PROBLEM


def _run_build(args: argparse.Namespace) -> int:
    from .bundle import BuildError, build_bundle
    from .export import ExportError

    entry = None
    if args.entry:
        try:
            entry = Path(args.entry).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return _fail(f"cannot read the entry file {args.entry}: {getattr(exc, 'strerror', None) or exc}")
    select = None
    if args.cells:
        try:
            select = [int(x) - 1 for x in args.cells.replace(" ", "").split(",") if x]  # positions from 0
        except ValueError:
            select = [-1]
        if any(i < 0 for i in select):
            return _fail(f"--cells takes comma-separated cell numbers from 1, like 1,3,4 (got {args.cells!r})")
    backtest_args = None
    if args.backtest_args:
        try:
            backtest_args = json.loads(args.backtest_args)
        except ValueError as exc:
            return _fail(f"--backtest-args is not valid JSON: {exc}")
    output = Path(args.output)
    if output.is_dir():
        return _fail(f"--output {output} is a folder; give the zip file's path")
    try:
        bundle = build_bundle(
            args.notebook,
            entry=entry,
            base_dir=args.base_dir,
            include=args.include,
            requirements=args.requirements,
            python_version=args.python_version,
            allow_keys=args.allow_keys,
            model_type=args.model_type,
            schedule=args.schedule,
            backtest_args=backtest_args,
            select=select,
            allow_undefined=args.allow_undefined,
        )
        print(bundle.summary())
        written = bundle.write_zip(output)
    except BuildError as exc:
        print(f"error: cannot build the model from {args.notebook}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_PROBLEM
    except ExportError as exc:
        return _fail(str(exc))
    print(f"Wrote {written} ({written.stat().st_size} bytes, sha256 {bundle.sha256})")
    return 0


COMMANDS: dict[str, Command] = {
    "build": ("build a Blankly model zip from a notebook", _build_arguments, _run_build),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="blankly-magics",
        description="Blankly strategies from Jupyter notebooks: build model zips from the terminal.",
    )
    subs = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        add_arguments(sub)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_PROBLEM
    if not args.command:
        p.print_help(sys.stderr)
        return EXIT_PROBLEM
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
