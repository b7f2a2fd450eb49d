"""``sweeps``: the sweeps on the server (of one model with ``--model``), newest first."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import list_sweeps
from .options import add_model

HELP = "list your sweeps (of one model with --model), newest first"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser)


def run(face: Face, args: argparse.Namespace) -> Any:
    return list_sweeps(face.session(), args.model, args.project)
