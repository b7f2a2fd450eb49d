"""``projects``: your projects."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import listings

HELP = "list your projects"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(face: Face, args: argparse.Namespace) -> Any:
    return listings.projects(face.session())
