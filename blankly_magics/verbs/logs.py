"""``logs``: a live model's log, or a backtest's; ``--follow`` keeps printing it as it grows."""
from __future__ import annotations

import argparse

from . import Face
from ..errors import BlanklyError
from ..workflow import backtest_log, find_model_id, follow, model_log
from ..workflow.logs import show
from .options import add_model

HELP = "a live model's log, or a backtest's with --backtest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument("--backtest", metavar="BACKTEST_ID", help="a backtest's log instead of a model's")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new lines until it stops (or interrupt)")
    parser.add_argument("--tail", type=int, default=200, metavar="N",
                        help="show the last N lines (0: all); default 200")


def run(face: Face, args: argparse.Namespace) -> None:
    session = face.session()
    if args.backtest:
        source = backtest_log(session, args.backtest)
    elif args.model:
        source = model_log(session, find_model_id(session, args.model, args.project))
    else:
        raise BlanklyError(f"{face.feedback.hints.blankly} logs: give --model ID_OR_NAME or --backtest BACKTEST_ID")
    if args.follow:
        follow(source, face.feedback, tail=args.tail, poll=face.config.poll_interval)
    else:
        show(source, face.feedback, tail=args.tail)
