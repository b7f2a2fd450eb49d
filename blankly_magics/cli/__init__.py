"""``blankly-magics`` (also ``python -m blankly_magics``): the verbs of ``%blankly`` for terminals and CI.

    blankly-magics build NOTEBOOK -o model.zip        the model zip, offline
    blankly-magics login [--url URL]                  sign in (default: the embedded local server)
    blankly-magics backtest NOTEBOOK --start ... ...  backtest on the server, print the metrics
    blankly-magics deploy NOTEBOOK                    run it live
    blankly-magics backtest NOTEBOOK --sweep low=20,25 --sweep high=65:80:5   a sweep, its table
    blankly-magics status|logs|stop|backtests|result|sweeps|sweep|cancel|projects|models|versions ...

Every command that talks to a server signs in for its own run: ``--url`` (else
``BLANKLY_DEPLOY_URL``, else the embedded local server, started if needed) with a
token from ``--token-env``, ``BLANKLY_REFRESH_TOKEN`` or the Blankly CLI's file.
Expected failures print one ``error: ...`` line on stderr and exit with 2; a
backtest that fails, or a live model that crashed, exits with 1; a stop (Ctrl-C)
with 130.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, Optional, Sequence

from .. import verbs
from ..errors import BlanklyError
from ..verbs import deploy as runs
from ..verbs.options import LOGIN_OPTIONS, add_options

EXIT_FAILED = 1
EXIT_PROBLEM = 2
EXIT_STOPPED = 130
OFFLINE = ("build",)
RUNS = ("backtest", "deploy")


class CliParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr, like every other expected failure.
    No abbreviations: ``--to`` must not quietly mean ``--token-env``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {verbs.usage_message(self.prog, message)}", file=sys.stderr)
        sys.exit(EXIT_PROBLEM)


def _connection() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    add_options(options, [o for o in LOGIN_OPTIONS if o[0][0] != "--browser"])
    return options


def parser() -> CliParser:
    top = CliParser(prog="blankly-magics", description="Blankly strategies from Jupyter notebooks, from a "
                    "terminal or a CI job: build, backtest and deploy them, and look after what runs.")
    subs = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=CliParser)
    verbs.add_verbs(subs, OFFLINE + ("login", "logout"))
    connection = _connection()
    for kind, name in (("backtest", "backtest"), ("live", "deploy")):
        help_text = runs.HELP[kind]
        sub = subs.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".",
                              parents=[connection])
        runs.add_arguments(sub, kind)
        sub.set_defaults(verb=name, kind=kind)
    verbs.add_verbs(subs, verbs.VERBS, parents=[connection])
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..config import BlanklyConfig
    from .terminal import TerminalFace

    top = parser()
    try:
        args = top.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already said)
        return exc.code if isinstance(exc.code, int) else EXIT_PROBLEM
    if not args.command:
        top.print_help(sys.stderr)
        return EXIT_PROBLEM
    face = TerminalFace(args, BlanklyConfig())
    try:
        if args.verb in RUNS:
            return _shown(runs.run_cli(face, args, args.kind), args, face)
        return _shown(verbs.module(args.verb).run(face, args), args, face)
    except BlanklyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        face.close()


def _shown(value: Any, args: argparse.Namespace, face: Any) -> int:
    """Print what a verb returned; the exit code it means."""
    from ..results import BacktestResult, DeployResult
    from ..sweep_result import SweepResult

    if args.verb in RUNS and getattr(args, "dry_run", False):
        print("Dry run: nothing was uploaded (write the zip with --save PATH).")
        return 0
    if hasattr(value, "to_text"):
        print(value.to_text())
    if face.feedback.cancel.requested:
        return EXIT_STOPPED  # what the server holds was said
    if isinstance(value, BacktestResult) and value.done and not value.ok:
        return EXIT_FAILED
    if isinstance(value, DeployResult) and value.status == "crashed":
        return EXIT_FAILED
    if isinstance(value, SweepResult) and value.done and value.status != "completed":
        return EXIT_FAILED
    return 0
