"""``result``: a backtest's metrics, account values and trades (``--wait``: once it finished)."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import fetch_backtest, wait_for_backtest

HELP = "a backtest's metrics, account values and trades"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backtest_id", metavar="BACKTEST_ID")
    parser.add_argument("--wait", action="store_true", help="wait for it to finish first")


def run(face: Face, args: argparse.Namespace) -> Any:
    session = face.session()
    if args.wait:
        return wait_for_backtest(session, args.backtest_id, face.feedback, poll=face.config.poll_interval,
                                 timeout=face.config.timeout)
    return fetch_backtest(session, args.backtest_id, face.feedback.hints)
