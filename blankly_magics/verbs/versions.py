"""``versions``: a model's uploaded versions."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import listings
from .options import add_model

HELP = "list a model's uploaded versions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser, required=True)


def run(face: Face, args: argparse.Namespace) -> Any:
    return listings.versions(face.session(), args.model, args.project)
