"""Between SQLite rows and records: JSON columns, and a row read as its record."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import fields as dataclass_fields
from typing import Any, Optional

from .records import json_safe


def dumps(value: Any) -> str:
    """A JSON column's text (strict JSON: NaN and infinities become null)."""
    try:  # a run's result usually is strict JSON already: written as it is, not copied first
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(json_safe(value), separators=(",", ":"), allow_nan=False)


def loads(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


def record(kind: type, row: sqlite3.Row, **decoded: Any) -> Any:
    """The record ``kind`` of a row: its columns are named as the record's fields; ``decoded``
    holds the fields whose column needs decoding (JSON, booleans)."""
    values = {f.name: row[f.name] for f in dataclass_fields(kind) if f.name not in decoded}
    return kind(**values, **decoded)
