"""Signing out (``%blankly_logout``, ``blankly-magics logout``): the token is revoked and forgotten."""
from __future__ import annotations

import argparse

from . import Face

HELP = "sign out: revoke the refresh token and forget it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(face: Face, args: argparse.Namespace) -> None:
    from .. import session as sessions

    signed = face.current()
    if signed is None:
        face.feedback.note("Not signed in.")
        return
    sessions.sign_out()
    face.feedback.note(f"Signed out of {signed.url}")
