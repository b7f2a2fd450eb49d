"""A backtest or a live deployment of a notebook (``%%blankly_deploy``, ``blankly-magics backtest|deploy``).

Both faces read the same options (``options.DEPLOY_OPTIONS``) into a ``ModelSource``
and a ``RunRequest`` and hand them to ``workflow.run``; they differ only in where
the cells come from (the kernel's notebook and the cell's body, or a path and
``--entry``) and in how they show a dry run.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional, Sequence

from . import Face
from ..errors import BlanklyError
from ..workflow import ModelSource, python_version, read_notebook, run
from .options import (CLI, DEPLOY_OPTIONS, PERIOD_OPTIONS, SWEEP_OPTIONS, add_options, backtest_args_of, options_for,
                      overrides_of, run_request)

HELP = {"backtest": "backtest a notebook's strategy on the server and show its metrics",
        "live": "deploy a notebook's strategy live on the server"}


def add_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    """The CLI's ``backtest``/``deploy``: a notebook path, ``--entry``, and the deploy options."""
    parser.add_argument("notebook", help="the notebook (.ipynb) holding the strategy cells")
    parser.add_argument("--entry", metavar="FILE", help="a file whose code becomes the entry point (default: the "
                        "body of the notebook's %%%%blankly_deploy cell, if it has one)")
    add_options(parser, options_for(DEPLOY_OPTIONS, CLI, backtest=kind == "backtest"))


def check_options(args: argparse.Namespace, config: Any, backtest: bool) -> tuple[Optional[dict], Optional[str]]:
    """(backtest arguments, python version) from the options, refused before anything else happens."""
    given = [flag for flag in PERIOD_OPTIONS if getattr(args, flag[2:], None) is not None]
    if given and not backtest and not args.dry_run:
        raise BlanklyError("--args/--to/--start/--end/--initial are backtest options: add --backtest")
    swept = [flag for flag in SWEEP_OPTIONS if getattr(args, flag[2:], None) is not None]
    if swept and not backtest:
        raise BlanklyError(f"{swept[0]} sweeps run backtests: add --backtest")
    if swept and not getattr(args, "sweep", None):
        raise BlanklyError(f"{swept[0]} ranks the points of a sweep: add --sweep NAME=VALUES")
    if getattr(args, "param", None) and not backtest:
        raise BlanklyError("--param overrides a backtest's parameters: add --backtest")
    overrides_of(args)  # a value that is not a literal, a bad range, a metric or constraint: said now
    return backtest_args_of(args), python_version(args.python or config.python)


def model_source(args: argparse.Namespace, config: Any, cells: Any, *, entry: Optional[str],
                 notebook_name: Optional[str], base_dir: Optional[Path], backtest_args: Optional[dict],
                 python: Optional[str]) -> ModelSource:
    include: Sequence[Any] = list(config.include) + list(args.include or [])
    return ModelSource(cells, entry=entry, notebook_name=notebook_name, base_dir=base_dir, include=include,
                       requirements=args.requirements, python_version=python, backtest_args=backtest_args,
                       save=args.save, extra=dict(allow_undefined=list(args.allow_undefined or [])))


def deploy(face: Face, args: argparse.Namespace, source: ModelSource, *, kind: str, notebook: Optional[Path]) -> Any:
    """The bundle of a dry run (nothing uploaded), else the run's result (None if stopped before an answer)."""
    if args.dry_run:
        from ..workflow.run import check_overrides

        bundle = source.build(face.feedback)
        check_overrides(bundle, *overrides_of(args))
        return bundle
    request = run_request(args, face.config, kind, notebook, source.backtest_args, source.python_version)
    return run(face.session(), request, source, face.feedback)


def run_cli(face: Face, args: argparse.Namespace, kind: str) -> Any:
    """``blankly-magics backtest|deploy NOTEBOOK``."""
    backtest_args, python = check_options(args, face.config, backtest=kind == "backtest")
    notebook = Path(args.notebook).expanduser().resolve()
    entry = read_entry(args.entry)
    cells = read_notebook(notebook)  # before signing in: a wrong path starts no server
    source = model_source(args, face.config, cells, entry=entry, notebook_name=notebook.name,
                          base_dir=notebook.parent, backtest_args=backtest_args, python=python)
    return deploy(face, args, source, kind=kind, notebook=notebook)


def read_entry(path: Optional[str]) -> Optional[str]:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BlanklyError(f"cannot read the entry file {path}: {getattr(exc, 'strerror', None) or exc}") from None
