"""Signing in (``%blankly_login``, ``blankly-magics login``): to a server, or to the embedded local one."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Callable, Optional

from . import Face
from ..errors import BlanklyError
from .options import LOGIN_OPTIONS, add_options

if TYPE_CHECKING:
    from ..config import BlanklyConfig
    from ..session import Session
    from ..workflow.feedback import Feedback

HELP = "sign in to a deployment server, or start and sign in to the embedded local one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, LOGIN_OPTIONS)


def sign_in_from(args: argparse.Namespace, config: "BlanklyConfig", feedback: "Feedback",
                 prompt: Optional[Callable[[str], str]] = None) -> "Session":
    """Sign in as the sign-in options (and the config, for what they leave unset) say.

    A token is never taken as an argument (it would be saved in the notebook or the
    shell's history) and never shown."""
    from .. import session as sessions

    url = getattr(args, "url", None) or config.server_url()
    data_dir = getattr(args, "data_dir", None)
    if url and data_dir:
        raise BlanklyError("--data-dir is for the embedded local server: drop --url (or --data-dir)")
    if not url and getattr(args, "token_env", None):
        raise BlanklyError("--token-env is for a server at a URL (the local server needs no token): give --url "
                           "or set BLANKLY_DEPLOY_URL, or drop --token-env")
    return sessions.sign_in(
        url or None, token_env=getattr(args, "token_env", None), browser=getattr(args, "browser", False),
        prompt=prompt, data_dir=data_dir or config.data_dir, notify=feedback.note,
        server_timeout=config.server_timeout, hints=feedback.hints,
    )


def run(face: Face, args: argparse.Namespace) -> None:
    face.feedback.note(sign_in_from(args, face.config, face.feedback, face.prompt).describe())
