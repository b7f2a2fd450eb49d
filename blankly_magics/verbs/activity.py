"""``activity``: what a live model is doing: its recent orders as a table, its account value as a chart;
``--follow`` prints each new order as it comes."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow.activity import follow_activity, live_model, read_activity
from .options import add_model

HELP = "a live model's recent orders and account value (default: the model deployed last)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new orders until the model stops (or interrupt)")
    parser.add_argument("--orders", type=int, default=20, metavar="N", help="show the last N orders (default 20)")


def run(face: Face, args: argparse.Namespace) -> Any:
    session = face.session()
    model_id = live_model(session, args.model, args.project)
    recent = max(1, args.orders)
    if args.follow:
        follow_activity(session, model_id, face.feedback, recent=recent, poll=max(face.config.poll_interval, 1.0))
        return None
    return read_activity(session, model_id, recent)
