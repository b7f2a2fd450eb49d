"""``sweep``: one sweep, its state and its table sorted by its objective (``--wait``: once it finished)."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import fetch_sweep, wait_for_sweep

HELP = "a sweep's state and table, best point first"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_id", metavar="SWEEP_ID")
    parser.add_argument("--wait", action="store_true", help="wait for every point to finish first")


def run(face: Face, args: argparse.Namespace) -> Any:
    session = face.session()
    if args.wait:
        return wait_for_sweep(session, args.sweep_id, face.feedback, timeout=face.config.timeout)
    return fetch_sweep(session, args.sweep_id, face.feedback.hints)
