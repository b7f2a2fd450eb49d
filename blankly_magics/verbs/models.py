"""``models``: the models of one project, or of all."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import listings

HELP = "list models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", metavar="ID_OR_NAME", help="only this project (default: every project)")


def run(face: Face, args: argparse.Namespace) -> Any:
    return listings.models(face.session(), args.project)
