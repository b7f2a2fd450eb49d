"""The magics' one error mapping, and their command-line reading.

Every expected failure is a ``BlanklyError``; here it becomes a ``UsageError``,
which IPython shows as one line with no traceback.
"""
from __future__ import annotations

import argparse
import shlex
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn, Optional

from IPython.core.error import UsageError

from ..errors import BlanklyError
from ..verbs import usage_message


@contextmanager
def usage_errors() -> Iterator[None]:
    """``BlanklyError`` -> ``UsageError`` with the same one-line message."""
    try:
        yield
    except BlanklyError as exc:
        raise UsageError(str(exc)) from None


def split(line: str) -> list[str]:
    """The options, split shell-style, so quoted JSON and names keep their insides."""
    try:
        return shlex.split(line or "")
    except ValueError as exc:
        raise UsageError(f"cannot read the options ({exc}): check the quotes in {line.strip()!r}") from None


def parse(magic: Any, line: str) -> argparse.Namespace:
    """Parse with the magic's own magic_arguments parser (so `%magic?` shows the same help)."""
    return magic.parser.parse_args(split(line))


class HelpShown(Exception):
    """--help was printed; nothing else to do."""


class SubcommandParser(argparse.ArgumentParser):
    """argparse that reports problems as UsageErrors instead of exiting the kernel (and takes no
    abbreviated options, as the CLI)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(usage_message(self.prog, message))

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        if status:
            raise UsageError((message or "").strip() or "bad arguments")
        raise HelpShown()
