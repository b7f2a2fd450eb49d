"""``logs``: a live model's log, or a backtest's; ``--follow`` keeps printing it as it grows.

With neither ``--model`` nor ``--backtest``, in a notebook: the model this notebook ran last."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from . import Face
from ..errors import BlanklyError
from ..workflow import Memory, backtest_log, find_model_id, follow, model_log
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
    notebook = None if args.backtest or args.model else face.notebook()
    if not (args.backtest or args.model or notebook):
        raise BlanklyError(_GIVE.format(face.feedback.hints.blankly))
    session = face.session()
    if args.backtest:
        source = backtest_log(session, args.backtest)
    elif args.model:
        source = model_log(session, find_model_id(session, args.model, args.project))
    else:
        source = model_log(session, _notebook_model(face, session, notebook))
    if args.follow:
        follow(source, face.feedback, tail=args.tail, poll=face.config.poll_interval)
    else:
        show(source, face.feedback, tail=args.tail)


_GIVE = "{} logs: give --model ID_OR_NAME or --backtest BACKTEST_ID"


def _notebook_model(face: Face, session: Any, notebook: Optional[Path]) -> str:
    """The model this notebook ran last on this server (its side file says), named in a note."""
    remembered: Optional[dict] = Memory.of(session, notebook).model()
    if not remembered:
        raise BlanklyError(_GIVE.format(face.feedback.hints.blankly)
                           + " (this notebook has run no model on this server yet)")
    face.feedback.note(f"(the log of model {remembered.get('name') or remembered['modelId']}, "
                       "the one this notebook ran last)")
    return str(remembered["modelId"])
