"""Options more than one verb (or face) reads, defined once: a model, a project, a run, a sign-in.

``DEPLOY_OPTIONS`` are the options of ``%%blankly_deploy`` and of the CLI's
``backtest`` and ``deploy`` verbs; ``LOGIN_OPTIONS`` those of ``%blankly_login``
and ``blankly-magics login``. Each is ``(flags, argparse keywords, faces)``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..workflow.backtest_args import from_options

if TYPE_CHECKING:
    from ..config import BlanklyConfig
    from ..workflow.run import RunRequest

MAGIC, CLI = "magic", "cli"
BOTH = (MAGIC, CLI)
Option = tuple[tuple[str, ...], dict[str, Any], tuple[str, ...]]


def add_model(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--model", metavar="ID_OR_NAME", required=required, help="the model, by its id or its name")
    add_project(parser)


def add_project(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", metavar="ID_OR_NAME", help="the project to look in (default: all of yours)")


DEPLOY_OPTIONS: list[Option] = [
    (("--backtest",), dict(action="store_true", help="backtest the model instead of deploying it live"), (MAGIC,)),
    (("--name",), dict(help="name of a new model (default: the notebook's file name)"), BOTH),
    (("--project",), dict(metavar="ID_OR_NAME", help="project to use (default: your personal project)"), BOTH),
    (("--model",), dict(metavar="ID_OR_NAME", help="model to add a version to (default: the one this notebook "
                        "deployed last, or the one its last unanswered upload made, else a new one)"), BOTH),
    (("--plan",), dict(help="plan (default: the plan_backtest / plan_live setting, e.g. %%config "
                       "BlanklyMagics.plan_live, else the server's first)"), BOTH),
    (("--python",), dict(metavar="X.Y", help="Python version to run with (default: this Python's, the "
                         "kernel's in a notebook)"), BOTH),
    (("--message", "-m"), dict(help="description of this version (or of the backtest)"), BOTH),
    (("--args",), dict(metavar="JSON", help="backtest arguments as a JSON object, e.g. '{\"to\": \"1y\"}'"),
     BOTH),
    (("--to",), dict(help="backtest length, e.g. 1y, 6M, 30d"), BOTH),
    (("--start",), dict(metavar="DATE", help="backtest start date (start_date), e.g. 2021-01-01"), BOTH),
    (("--end",), dict(metavar="DATE", help="backtest end date (end_date)"), BOTH),
    (("--initial",), dict(metavar="ASSET=AMOUNT", action="append",
                          help="initial holdings, e.g. USD=10000 (repeatable)"), BOTH),
    (("--param",), dict(metavar="NAME=VALUE", action="append",
                        help="override a value of the notebook's parameters cell (`#| blankly: parameters`) for this "
                        "backtest, e.g. --param low=25 (a Python/JSON literal; repeatable)"), BOTH),
    (("--sweep",), dict(metavar="NAME=VALUES", action="append",
                        help="run one backtest per point of a grid instead: a list (low=20,25,30) or a range "
                        "START:STOP:STEP (high=65:80:5, STOP included when on the step); repeatable"), BOTH),
    (("--maximize",), dict(metavar="METRIC", help="the sweep's best point maximizes this metric, named as Blankly "
                           "prints it (default: Sharpe Ratio)"), BOTH),
    (("--minimize",), dict(metavar="METRIC", help="the sweep's best point minimizes this metric instead"), BOTH),
    (("--constraint",), dict(metavar="TEXT", action="append",
                             help="a sweep's point counts only if it meets this, e.g. \"Max Drawdown (%%) < 25\" "
                             "(repeatable)"), BOTH),
    (("--include",), dict(metavar="PATH", action="append", default=[],
                          help="extra file or folder to ship (repeatable)"), BOTH),
    (("--requirements",), dict(metavar="FILE", help="requirements.txt to ship (default: inferred from the imports)"),
     BOTH),
    (("--allow-undefined",), dict(metavar="NAME", action="append", default=[],
                                  help="a name made at run time (by a library, or setattr on the module) that the "
                                  "undefined-name check lets pass; repeatable (in a cell: "
                                  "`#| blankly: allow-undefined NAME`)"), BOTH),
    (("--notebook",), dict(metavar="PATH", help="notebook file to take the cells from (default: found "
                           "automatically)"), (MAGIC,)),
    (("--dry-run",), dict(action="store_true", help="build and show the model, upload nothing"), BOTH),
    (("--save",), dict(metavar="PATH", help="also write the model zip to PATH"), BOTH),
    (("--no-wait",), dict(action="store_true", help="do not wait for the backtest to finish"), BOTH),
]

PERIOD_OPTIONS = ("--args", "--to", "--start", "--end", "--initial")  # what a backtest runs on
SWEEP_OPTIONS = ("--sweep", "--maximize", "--minimize", "--constraint")
BACKTEST_ONLY = PERIOD_OPTIONS + ("--param",) + SWEEP_OPTIONS + ("--no-wait",)

LOGIN_OPTIONS: list[Option] = [
    (("--url",), dict(help="server URL (default: %%config BlanklyMagics.url in a notebook, else "
                      "BLANKLY_DEPLOY_URL, else the embedded local server)"), BOTH),
    (("--token-env",), dict(metavar="VAR", help="environment variable holding the refresh token (default order: "
                            "BLANKLY_REFRESH_TOKEN, the Blankly CLI's auth.json, a hidden prompt)"), BOTH),
    (("--browser",), dict(action="store_true", help="sign in through the browser (captures the redirect on "
                          "port 9082)"), BOTH),
    (("--data-dir",), dict(metavar="DIR", help="data folder of the embedded local server (default: "
                           "BLANKLY_MAGICS_HOME)"), BOTH),
]


def options_for(options: Sequence[Option], face: str, *, backtest: bool = True) -> list[Option]:
    """The options a face shows (without the backtest-only ones for a live deploy)."""
    return [o for o in options if face in o[2] and (backtest or o[0][0] not in BACKTEST_ONLY)]


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    for flags, keywords, _ in options:
        parser.add_argument(*flags, **keywords)


def backtest_args_of(args: argparse.Namespace) -> Optional[dict]:
    """The backtest keyword arguments the options give, or None when none was given."""
    return from_options(getattr(args, "args", None), getattr(args, "start", None), getattr(args, "end", None),
                        getattr(args, "to", None), getattr(args, "initial", None))


def run_request(args: argparse.Namespace, config: "BlanklyConfig", kind: str, notebook: Optional[Path],
                backtest_args: Optional[dict], python: Optional[str]) -> "RunRequest":
    """The RunRequest the deploy options (with the config for what they leave unset) ask for."""
    from ..workflow.run import RunRequest

    parameters, sweep = overrides_of(args)
    return RunRequest.configured(
        config, kind, notebook=notebook, name=args.name, model=args.model, project=args.project, plan=args.plan,
        python_version=python, description=args.message or "", backtest_args=backtest_args,
        wait=False if getattr(args, "no_wait", False) else None, parameters=parameters or None, sweep=sweep,
    )


def overrides_of(args: argparse.Namespace) -> tuple[dict, Any]:
    """(``--param`` overrides, the ``Sweep`` of ``--sweep/--maximize/--minimize/--constraint`` or None)."""
    from ..workflow.params import overrides
    from ..workflow.sweeps import Sweep

    parameters = overrides(getattr(args, "param", None))
    if not getattr(args, "sweep", None):
        return parameters, None
    sweep = Sweep.from_options(args.sweep, maximize=args.maximize, minimize=args.minimize,
                               constraints=args.constraint or ())
    return parameters, sweep
