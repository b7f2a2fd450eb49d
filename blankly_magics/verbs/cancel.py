"""``cancel``: stop a queued or running backtest, or a sweep's points not yet finished, on the server."""
from __future__ import annotations

import argparse

from . import Face
from ..client import DeploymentError
from ..workflow import cancel_backtest, cancel_sweep

HELP = "cancel a queued or running backtest, or a sweep (its finished points keep their results)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="BACKTEST_OR_SWEEP_ID")


def run(face: Face, args: argparse.Namespace) -> None:
    session = face.session()
    try:
        line = cancel_backtest(session, args.run_id)
    except DeploymentError as exc:
        if exc.status != 404:
            raise
        try:
            line = cancel_sweep(session, args.run_id)
        except DeploymentError as again:
            if again.status != 404:
                raise
            raise DeploymentError(404, f"no backtest or sweep {args.run_id!r} on {session.url}; list them with "
                                  f"{face.feedback.hints.command('backtests', '--model', 'MODEL')} or "
                                  f"{face.feedback.hints.command('sweeps')}") from None
    face.feedback.note(line)
