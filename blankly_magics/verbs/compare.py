"""``compare``: completed backtests side by side, their metrics in one table and their equity curves overlaid."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import compare

HELP = "set completed backtests side by side: their metrics and their equity curves"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backtest_ids", metavar="BACKTEST_ID", nargs="+", help="two or more backtests")
    parser.add_argument("--save", metavar="PATH", help="also write the comparison as one self-contained HTML file")


def run(face: Face, args: argparse.Namespace) -> Any:
    comparison = compare(face.session(), args.backtest_ids, face.feedback.hints)
    if args.save:
        face.feedback.note(f"Saved the comparison to {comparison.save(args.save)}")
    return comparison
