"""Where each physical line of a cell stands: a statement's start, its continuation, or
inside a triple-quoted string. A scan with one regular expression, no tokenizer: fast on
large notebooks, and it tolerates the IPython syntax that Python's tokenizer refuses."""
from __future__ import annotations

import re
from typing import Callable, Sequence

# Kinds of physical lines: where a logical line starts, a continuation (open
# bracket or backslash), a line that begins inside a triple-quoted string, and
# the continuation of an IPython escape line ending in a backslash.
START, CONT, STRING, ESC_CONT = 0, 1, 2, 3

_SCAN = re.compile(r"\\.?|\"\"\"|'''|[\"'#()\[\]{}]")


def split_lines(source: str) -> list[str]:
    if "\r" in source:
        source = source.replace("\r\n", "\n").replace("\r", "\n")
    return source.split("\n")


def line_kinds(lines: Sequence[str], is_escape: Callable[[str], bool] = lambda s: False) -> list[int]:
    """Classify each line; lines ``is_escape`` accepts (IPython's) are opaque, never parsed as Python."""
    kinds = []
    depth = 0
    quote = ""
    cont = False
    esc_cont = False
    for line in lines:
        if esc_cont:
            kind = ESC_CONT
        elif len(quote) == 3:
            kind = STRING
        elif quote or depth or cont:
            kind = CONT
        else:
            kind = START
        kinds.append(kind)
        cont = False
        if kind in (START, ESC_CONT) and (esc_cont or is_escape(line)):
            esc_cont = line.rstrip().endswith("\\")
            continue
        esc_cont = False
        depth, quote, cont = _scan(line, depth, quote)
        if len(quote) == 1 and not cont:
            quote = ""  # an unterminated string ends at the line end (error recovery)
    return kinds


def _scan(line: str, depth: int, quote: str) -> tuple[int, str, bool]:
    """Bracket depth, open quote and backslash continuation after ``line``."""
    cont = False
    for m in _SCAN.finditer(line):
        tok = m.group()
        if quote:
            if tok[0] == "\\":
                if len(tok) == 1 and len(quote) == 1:
                    cont = True  # a backslash-continued one-quote string
            elif tok[0] == quote[0] and (len(quote) == 1 or tok == quote):
                quote = ""
            continue
        if tok[0] == "\\":
            cont = cont or len(tok) == 1
        elif tok == "#":
            break
        elif tok[0] in "\"'":
            quote = tok
        elif tok in "([{":
            depth += 1
        elif depth:
            depth -= 1
    return depth, quote, cont
