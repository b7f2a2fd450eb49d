"""What the exporter raises: the notebook cannot be read, or the model cannot be built."""
from __future__ import annotations

from typing import Sequence

from ..errors import BlanklyError


class ExportError(BlanklyError):
    """The notebook or the arguments cannot be turned into a model."""


class BuildError(ExportError):
    """The model cannot be built; ``problems`` lists each reason, naming its cell.

    ``str()`` is one line (the problems joined by ``; ``); a terminal prints
    ``problems`` one per line instead."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("the model cannot be built: " + "; ".join(self.problems))
