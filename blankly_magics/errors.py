"""The one base of every failure a user can act on.

Each face maps ``BlanklyError`` once: the magics to a one-line ``UsageError``
(no traceback), the panel to its status line, the CLI to a line on stderr and
exit code 2. The message is the whole answer: what is wrong and how to fix it,
on one line, never a secret.
"""
from __future__ import annotations


class BlanklyError(Exception):
    """An expected problem, said in one line (``str()`` folds any newlines)."""

    def __str__(self) -> str:
        return " ".join(super().__str__().split())
