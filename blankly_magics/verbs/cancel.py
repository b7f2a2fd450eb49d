"""``cancel``: stop a queued or running backtest on the server."""
from __future__ import annotations

import argparse

from . import Face
from ..workflow import cancel_backtest

HELP = "cancel a queued or running backtest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backtest_id", metavar="BACKTEST_ID")


def run(face: Face, args: argparse.Namespace) -> None:
    face.feedback.note(cancel_backtest(face.session(), args.backtest_id))
