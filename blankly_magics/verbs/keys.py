"""``keys``: the exchange keys the server keeps for you; names only ever come back.

    keys                              list the stored exchanges and portfolios
    keys import PATH                  store every portfolio of a Blankly keys.json (***** skipped)
    keys set EXCHANGE PORTFOLIO       ask each field the exchange needs, hidden as typed
    keys delete EXCHANGE [PORTFOLIO]  delete one portfolio, or all of an exchange's
"""
from __future__ import annotations

import argparse
import getpass
from typing import Any, Callable

from . import Face
from ..workflow.keys import EXCHANGE_FIELDS, KeysError, delete_keys, import_keys, list_keys, set_keys

HELP = "exchange keys kept by the server for your runs: list, import PATH, set EXCHANGE PORTFOLIO, delete"
ACTIONS = {"list": (0, 0, ""), "import": (1, 1, "PATH"), "set": (2, 2, "EXCHANGE PORTFOLIO"),
           "delete": (1, 2, "EXCHANGE [PORTFOLIO]")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=list(ACTIONS),
                        help="list (the default), import a keys.json, set one portfolio, or delete")
    parser.add_argument("names", nargs="*", metavar="ARG", help="PATH, or EXCHANGE [PORTFOLIO]")
    parser.add_argument("--sandbox", action="store_true",
                        help=f"set: the keys are for the exchange's sandbox (exchanges: {', '.join(EXCHANGE_FIELDS)})")


def _hidden_prompt(face: Face) -> Callable[[str], str]:
    """How ``set`` asks: getpass (a password box in Jupyter), never an echoing prompt."""
    if face.prompt is None:
        return lambda label: getpass.getpass(label)  # looked up at call time: the kernel installs its own
    return lambda label: _no_terminal()


def _no_terminal() -> str:
    raise KeysError("keys set asks for each value with a hidden prompt and there is no terminal here: "
                    "store a keys.json with `keys import PATH` instead")


def run(face: Face, args: argparse.Namespace) -> Any:
    low, high, usage = ACTIONS[args.action]
    if not low <= len(args.names) <= high:
        raise KeysError(f"usage: {face.feedback.hints.blankly} keys {args.action} {usage}".rstrip())
    session = face.session()
    if args.action == "list":
        return list_keys(session)
    if args.action == "import":
        line = import_keys(session, args.names[0])
    elif args.action == "set":
        line = set_keys(session, args.names[0], args.names[1], _hidden_prompt(face), sandbox=args.sandbox)
    else:
        line = delete_keys(session, *args.names)
    face.feedback.note(line)
    return None
