"""``status``: the live state of every model, or of one."""
from __future__ import annotations

import argparse
from typing import Any

from . import Face
from ..workflow import deployment_result, find_model_id, listings
from ..workflow.activity import last_orders
from .options import add_model

HELP = "live state of every model, or of one with --model (and its last orders)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(parser)


def run(face: Face, args: argparse.Namespace) -> Any:
    session = face.session()
    if not args.model:
        return listings.statuses(session)
    model_id = find_model_id(session, args.model, args.project)
    result = deployment_result(session, model_id, hints=face.feedback.hints)
    result.orders = last_orders(session, model_id)
    return result
