"""``backtests``: a model's backtests, newest first."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import listings
from .options import add_model

HELP = "list a model's backtests, newest first"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser, required=True)


def run(face: Face, args: argparse.Namespace) -> Any:
    return listings.backtests(face.session(), args.model, args.project)
