"""The verbs of ``%blankly`` and of ``blankly-magics``: one module per verb, shared by both faces.

A verb module has ``HELP`` (one line), ``add_arguments(parser)`` and
``run(face, args)``, which asks the workflow and returns what to show (a result
object, or None once it has said what it had to through ``face.feedback``). The
magics route ``%blankly VERB`` here and display the value below the cell; the CLI
routes ``blankly-magics VERB`` here and prints its text. A new verb is a new module
named in ``VERBS``: it then exists in both faces, with the same options and words.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import re
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import BlanklyConfig
    from ..session import Session
    from ..workflow.feedback import Feedback

VERBS = ("projects", "models", "versions", "status", "logs", "activity", "stop", "backtests", "result", "compare",
         "sweeps", "sweep", "cancel", "keys")


class Face(Protocol):
    """What a verb needs from the face that runs it (``magics.face.NotebookFace``,
    ``cli.terminal.TerminalFace``)."""

    config: "BlanklyConfig"
    feedback: "Feedback"
    prompt: Optional[Callable[[str], str]]  # how sign-in asks for a token (None: getpass)

    def session(self) -> "Session":
        """The signed-in session (the magics: the current one; the CLI: signs in now)."""

    def current(self) -> Optional["Session"]:
        """A session at hand without asking the user anything, or None."""

    def notebook(self) -> Optional["Path"]:
        """The notebook the face works in, whose side file remembers its models (None: no notebook)."""


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def add_verbs(subparsers: "argparse._SubParsersAction", names: Sequence[str] = VERBS,
              parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """A sub-parser per verb, each with its own options (and the face's ``parents``)."""
    for name in names:
        verb = module(name)
        sub = subparsers.add_parser(name, help=verb.HELP, description=verb.HELP[:1].upper() + verb.HELP[1:] + ".",
                                    parents=list(parents))
        verb.add_arguments(sub)
        sub.set_defaults(verb=name)


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def usage_message(prog: str, message: str) -> str:
    """How both faces word a command line they cannot read (a near miss gets "did you mean")."""
    return f"{prog}: {message}{did_you_mean(message)} (see `{prog} --help`)"


def did_you_mean(message: str) -> str:
    """``"; did you mean 'status'?"`` for argparse's "invalid choice: 'stauts' (choose from ...)"."""
    found = _INVALID_CHOICE.search(message)
    if not found:
        return ""
    close = difflib.get_close_matches(found.group(1), re.findall(r"'([^']*)'", found.group(2)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
