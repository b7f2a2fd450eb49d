"""``stop``: stop a live model."""
from __future__ import annotations

import argparse

from . import Face
from ..workflow import find_model_id, stop_model
from .options import add_model

HELP = "stop a live model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser, required=True)


def run(face: Face, args: argparse.Namespace) -> None:
    session = face.session()
    face.feedback.note(stop_model(session, find_model_id(session, args.model, args.project)))
