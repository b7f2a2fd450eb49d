"""``backtests``: a model's backtests with their key metrics, newest first or best first (``--sort``)."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import listings
from .options import add_model

HELP = "list a model's backtests with their key metrics, newest first"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser, required=True)
    parser.add_argument("--sort", choices=listings.BACKTEST_SORTS, default="created",
                        help="order: created (newest first, the default), or best first by return, sharpe, "
                             "drawdown (the smallest first) or trades")


def run(face: Face, args: argparse.Namespace) -> Any:
    return listings.backtests(face.session(), args.model, args.project, sort=args.sort)
