"""A run's parameter overrides and a sweep's grid, read from what the user typed, checked before upload.

``--param low=25`` overrides one value of the notebook's parameters cell; ``--sweep
low=20,25,30`` and ``--sweep high=65:80:5`` (a range, ``stop`` included when it falls
on the step) make a grid. A value is a Python or JSON literal (``25``, ``0.5``,
``"GOOG-USD"``, ``true``). Names are checked against what the parameters cell assigns
(``check_names``) once the model is built, still before anything is sent.
"""
from __future__ import annotations

import ast
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping, Optional

from ..errors import BlanklyError
from ..sweepspec import MAX_POINTS, check_grid

_RANGE = re.compile(r"^\s*(?P<start>[^:]+):(?P<stop>[^:]+):(?P<step>[^:]+)\s*$")
QUOTE_HINT = "quote text, e.g. --param 'symbol=\"GOOG-USD\"'"


class ParameterError(BlanklyError, ValueError):
    """An override or a grid that cannot be used, said in one line before anything is uploaded."""


def literal(text: str, where: str) -> Any:
    """A Python or JSON literal (``25``, ``"x"``, ``True``/``true``, ``[1, 2]``), as JSON carries it."""
    text = text.strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            value = json.loads(text)
        except ValueError:
            raise ParameterError(f"{where}: {text[:40]!r} is not a Python or JSON literal; {QUOTE_HINT}") from None
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise ParameterError(f"{where}: {text[:40]!r} cannot travel as JSON (a number, text, True/False/None, "
                             "or a list or dict of them)") from None


def _name_value(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ParameterError(f"{option} {item!r} is not NAME=VALUE, e.g. {option} low=25")
    return name, value


def overrides(items: Optional[Iterable[str]]) -> dict[str, Any]:
    """``--param`` items -> ``{"low": 25, ...}``; a name given twice is refused."""
    out: dict[str, Any] = {}
    for item in items or ():
        name, text = _name_value(item, "--param")
        if name in out:
            raise ParameterError(f"--param {name} is given twice: give each parameter once")
        out[name] = literal(text, f"--param {name}")
    return out


def sweep_values(text: str, where: str) -> list[Any]:
    """``20,25,30``, ``65:80:5`` (both ends included when on the step) or ``[20, 25]`` -> the values."""
    text = text.strip()
    if text.startswith("["):
        values = literal(text, where)
    else:
        match = _RANGE.match(text)
        values = _range(match, where) if match else [literal(item, where) for item in text.split(",") if item.strip()]
    if not isinstance(values, list) or not values:
        raise ParameterError(f"{where}: no values; give a list like 20,25,30 or a range like 65:80:5")
    seen = set()
    for value in values:
        key = json.dumps(value, sort_keys=True)
        if key in seen:
            raise ParameterError(f"{where}: {value!r} is given twice; give each value once")
        seen.add(key)
    return values


def _range(match: "re.Match[str]", where: str) -> list[Any]:
    """START:STOP:STEP counted in decimal (0.1 steps land on 0.3, not 0.30000000000000004)."""
    try:
        start, stop, step = (Decimal(match[k].strip()) for k in ("start", "stop", "step"))
    except InvalidOperation:
        raise ParameterError(f"{where}: a range is START:STOP:STEP of numbers, e.g. 65:80:5") from None
    if not all(d.is_finite() for d in (start, stop, step)):
        raise ParameterError(f"{where}: a range is START:STOP:STEP of finite numbers, e.g. 65:80:5")
    if step <= 0:
        raise ParameterError(f"{where}: the step is {step}; a range counts up by a step above 0, e.g. 65:80:5")
    if start > stop:
        raise ParameterError(f"{where}: the range is empty (it starts at {start}, past its stop {stop}); "
                             "write START:STOP:STEP with START <= STOP")
    count = int((stop - start) / step) + 1
    if count > MAX_POINTS:
        raise ParameterError(f"{where}: the range has {count:,} values; a sweep runs at most {MAX_POINTS:,} points")
    whole = all(d == d.to_integral_value() for d in (start, step))
    return [int(start + i * step) if whole else float(start + i * step) for i in range(count)]


def grid(items: Optional[Iterable[str]]) -> dict[str, list[Any]]:
    """``--sweep`` items -> ``{"low": [20, 25, 30], "high": [65, 70, 75, 80]}`` in the order given."""
    out: dict[str, list[Any]] = {}
    for item in items or ():
        name, text = _name_value(item, "--sweep")
        if name in out:
            raise ParameterError(f"--sweep {name} is given twice: list all its values in one --sweep")
        out[name] = sweep_values(text, f"--sweep {name}")
    if out:
        check_grid(out)
    return out


def check_names(defaults: Mapping[str, Any], cell: Optional[str], given: Mapping[str, Any], option: str) -> None:
    """Every name in ``given`` is one the parameters cell (``cell``, with ``defaults``) assigns."""
    if not given:
        return
    if cell is None:
        first = next(iter(given))
        raise ParameterError(f"{option} {first}: the notebook has no parameters cell; mark the cell that assigns "
                             "the parameters with a first line `#| blankly: parameters` (or the cell tag parameters)")
    unknown = [name for name in given if name not in defaults]
    if unknown:
        known = ", ".join(defaults) or "nothing"
        raise ParameterError(f"{option} {unknown[0]}: the parameters cell, {cell}, does not assign {unknown[0]} "
                             f"(it assigns {known})")


def check_apart(parameters: Mapping[str, Any], sweep: Mapping[str, Any]) -> None:
    """A name is either fixed (--param) or swept (--sweep), not both."""
    both = [name for name in sweep if name in parameters]
    if both:
        raise ParameterError(f"{both[0]} is given with --param and with --sweep: fix it or sweep it, not both")
