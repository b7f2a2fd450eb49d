"""``#| blankly`` directives: comment lines at the top of a cell that steer the export.

A small processor in nbdev's manner: the cell's leading ``#|`` lines are read,
each ``blankly`` directive is dispatched by its first word to one method, and
the methods fill in what the cell asks for::

    #| blankly                           export this cell
    #| blankly: skip                     leave it out (also: no, exclude)
    #| blankly: allow-undefined sm m     these names are made at run time (by a
                                         library or setattr): do not refuse them
    #| blankly: parameters               the cell of the strategy's parameters (papermill's
                                         cell tag `parameters` says the same): exported, and
                                         a run's overrides are applied right after it
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional

_DIRECTIVE = re.compile(r"^#\|\s*blankly(?![\w])(.*)$")

EXPORT_TAG = "blankly"
SKIP_TAG = "blankly-skip"
PARAMETERS_TAG = "parameters"  # papermill's convention


@dataclass
class CellDirectives:
    """What a cell's tags and ``#| blankly`` lines ask for."""

    mark: str = ""  # "export" | "skip" | "" (no opinion)
    why: str = ""  # the directive or tag that decided ``mark``
    allow_undefined: list[str] = field(default_factory=list)  # names made at run time
    parameters: str = ""  # the directive or tag that makes it the parameters cell ("": it is not)
    problems: list[str] = field(default_factory=list)  # each names the bad line


class DirectiveProcessor:
    """Reads one cell's directives; ``do_<word>`` handles ``#| blankly: <word> ...``."""

    def __init__(self) -> None:
        self.found = CellDirectives()

    def __call__(self, source: str, tags: tuple[str, ...] = ()) -> CellDirectives:
        self.found = CellDirectives()
        for line in source.lstrip("\n").split("\n"):
            s = line.strip()
            if not s.startswith("#|"):
                break
            m = _DIRECTIVE.match(s)
            if m:
                self._dispatch(s, m.group(1).strip())
        if SKIP_TAG in tags:
            self.found.mark, self.found.why = "skip", "tag `blankly-skip`"
        elif self.found.mark != "skip" and EXPORT_TAG in tags:
            self.found.mark, self.found.why = "export", "tag `blankly`"
        if PARAMETERS_TAG in tags and not self.found.parameters:
            self.found.parameters = "tag `parameters`"
        return self.found

    def _dispatch(self, line: str, rest: str) -> None:
        if rest and not rest.startswith(":"):  # `#| blankly-skip`, `#| blankly skip`...
            self._unknown(line)
            return
        words = rest[1:].split()
        handler = self._handler(words[0].lower() if words else "export")
        if handler is None:
            self._unknown(line)
        else:
            handler(line, words[1:])

    def _handler(self, word: str) -> Optional[Callable[[str, list[str]], None]]:
        return getattr(self, "do_" + word.replace("-", "_"), None) if word.replace("-", "").isalpha() else None

    def _unknown(self, line: str) -> None:
        self.found.problems.append(
            f"unknown directive `{line}`; write `#| blankly` to export the cell or `#| blankly: skip` to leave it out"
        )

    # ------------------------------------------------------------ one method per directive

    def do_export(self, line: str, args: list[str]) -> None:
        if args:
            self._unknown(line)
        elif self.found.mark != "skip":
            self.found.mark, self.found.why = "export", "`#| blankly`"

    do_yes = do_include = do_export

    def do_skip(self, line: str, args: list[str]) -> None:
        if args:
            self._unknown(line)
        else:
            self.found.mark, self.found.why = "skip", "`#| blankly: skip`"

    do_no = do_exclude = do_skip

    def do_parameters(self, line: str, args: list[str]) -> None:
        if args:
            self._unknown(line)
        else:
            self.found.parameters = "`#| blankly: parameters`"

    def do_allow_undefined(self, line: str, args: list[str]) -> None:
        names = [n for arg in args for n in arg.split(",") if n]
        bad = [n for n in names if not n.isidentifier()]
        if not names or bad:
            self.found.problems.append(
                f"`{line}`: " + (f"{', '.join(bad)} is not a Python name" if bad else "no name given")
                + "; write `#| blankly: allow-undefined NAME [NAME...]`"
            )
            return
        self.found.allow_undefined.extend(n for n in names if n not in self.found.allow_undefined)


def read_directives(source: str, tags: tuple[str, ...] = ()) -> CellDirectives:
    return DirectiveProcessor()(source, tags)
