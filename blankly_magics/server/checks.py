"""Checks of request values that name server choices: plan, Python version, model
type, backtest arguments, parameter overrides and screener schedules."""
from __future__ import annotations

import json
import re
import sys
from typing import Any, Optional

from . import cron
from .web import ApiError, field_text
from .state import Server

_PYTHON = re.compile(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*")
MAX_ARGS_DEPTH = 32  # backtest kwargs are shallow ({"initial_values": {"USD": 1}}); deeper is abuse


def field_model_type(fields: dict[str, Any]) -> str:
    kind = field_text(fields, "type").strip().lower()
    if kind and kind not in ("strategy", "screener"):
        raise ApiError(400, f"type must be 'strategy' or 'screener', not {kind[:40]!r}")
    return kind


def choose_plan(server: Server, kind: str, name: str) -> tuple[str, dict[str, Any]]:
    """The named plan of ``kind`` (the first, smallest, when no name is given)."""
    plans = server.config.plans[kind]
    if not name:
        name = next(iter(plans))
    if name not in plans:
        raise ApiError(400, f"unknown {kind} plan {name[:60]!r}; choose one of: {', '.join(plans)}")
    return name, plans[name]


def choose_python(server: Server, requested: str, source: str) -> str:
    """Normalise a python version to X.Y and check the runner can use it."""
    available = server.runner.python_versions()
    if not requested:
        own = f"{sys.version_info[0]}.{sys.version_info[1]}"
        requested = own if own in available or not available else available[0]
    match = _PYTHON.fullmatch(str(requested))
    if not match:
        raise ApiError(400, f"{source} {str(requested)[:40]!r} is not a Python version like 3.11")
    version = f"{match[1]}.{match[2]}"
    if version not in available:
        raise ApiError(
            400,
            f"this server cannot run Python {version} ({source}); "
            f"it can run: {', '.join(available) or 'none'}",
        )
    return version


def parse_backtest_args(raw: Any) -> Optional[dict[str, Any]]:
    return json_object(raw, "backtestArgs", "a JSON object of .backtest() keyword arguments", '{"to": "1y"}')


def json_object(raw: Any, name: str, what: str, example: str) -> Optional[dict[str, Any]]:
    """A field holding a JSON object (as text in a form, as an object in a JSON body); None when absent."""
    if raw is None or raw == "":
        return None
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, f"{name} is not valid JSON ({str(exc)[:80]}); send {what}, such as {example}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"{name} must be {what}, such as {example}, not {type(value).__name__}")
    if _depth(value) > MAX_ARGS_DEPTH:
        # Storing it walks it recursively: a deep enough value would crash that walk.
        raise ApiError(400, f"{name} is nested more than {MAX_ARGS_DEPTH} levels deep")
    return value


def parse_parameters(raw: Any) -> dict[str, Any]:
    """``parameters``: overrides of the parameters cell, a JSON object of name -> value ({} when absent)."""
    value = json_object(raw, "parameters", "a JSON object of parameter values", '{"low": 25}') or {}
    bad = [name for name in value if not name.isidentifier()]
    if bad:
        raise ApiError(400, f"parameters: {bad[0][:40]!r} is not a parameter name (a Python name, like low)")
    return value


def check_parameter_names(manifest: dict[str, Any], names: Any, field: str) -> None:
    """Every name is one the version's parameters cell assigns (blankly.json ``parameters``)."""
    names = list(names)
    if not names:
        return
    known = manifest.get("parameters")
    if not isinstance(known, dict):
        raise ApiError(400, f"{field}: this version has no parameters cell (blankly.json has no 'parameters'), "
                            "so nothing can override its values")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ApiError(400, f"{field}: the parameters cell does not assign {unknown[0][:40]!r} "
                            f"(it assigns {', '.join(known) or 'nothing'})")


def _depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (iteratively: the value itself may be deep)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_ARGS_DEPTH:
                break
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_schedule(schedule: str) -> str:
    try:
        return cron.parse(schedule).text
    except cron.CronError as exc:
        raise ApiError(400, f"schedule: {exc}") from None


def manifest_schedule(manifest: dict[str, Any]) -> str:
    screener = manifest.get("screener")
    if isinstance(screener, dict) and isinstance(screener.get("schedule"), str):
        return screener["schedule"].strip()
    return ""
