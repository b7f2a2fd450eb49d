"""Every magic's and command's help, keyed by how it is typed: the docs' reference is generated from it."""
from __future__ import annotations

import argparse
import inspect


def _subcommands(parser: argparse.ArgumentParser, prefix: str, texts: dict[str, str]) -> None:
    texts[prefix] = parser.format_help()
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                texts[f"{prefix} {name}"] = sub.format_help()


def help_texts() -> dict[str, str]:
    """Each magic's help as ``%name?`` shows it, keyed by how it is typed (``%%blankly_deploy``,
    ``%blankly logs``, ...), and each CLI verb's ``--help`` (``blankly-magics deploy``, ...)."""
    from ..cli import parser as cli_parser
    from .magic import BlanklyMagics
    from .subcommands import parser

    texts = {
        "%blankly_login": inspect.cleandoc(BlanklyMagics.blankly_login.__doc__ or ""),
        "%blankly_logout": inspect.cleandoc(BlanklyMagics.blankly_logout.__doc__ or ""),
        "%%blankly_deploy": inspect.cleandoc(BlanklyMagics.blankly_deploy.__doc__ or ""),
    }
    _subcommands(parser(), "%blankly", texts)
    _subcommands(cli_parser(), "blankly-magics", texts)
    return texts
