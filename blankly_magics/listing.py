"""Rows from the server (projects, models, versions...) as a table, in text and HTML."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from .results import Shown, esc, format_time, format_value


@dataclass(repr=False)
class Listing(Shown):
    """Rows from the server (projects, models, versions...) shown as a table;
    `.rows` keeps the raw dicts."""

    title: str
    columns: list  # [(key, header)]
    rows: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]

    def _cell(self, row: dict, key: str) -> str:
        value = row.get(key)
        if key.endswith("At") or key in ("since",):
            return format_time(value)
        if isinstance(value, (dict, list)):
            return json.dumps(value, sort_keys=True)
        return "" if value is None else format_value(value) if isinstance(value, float) else str(value)

    def to_text(self) -> str:
        if not self.rows:
            return f"{self.title}: none"
        headers = [h for _, h in self.columns]
        table = [[self._cell(r, k) for k, _ in self.columns] for r in self.rows]
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
        lines = [f"{self.title} ({len(self.rows)})", "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
        return "\n".join(lines)

    def to_html(self) -> str:
        if not self.rows:
            return f"<p>{esc(self.title)}: none</p>"
        head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for _, h in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{esc(self._cell(r, k))}</td>" for k, _ in self.columns) + "</tr>"
            for r in self.rows
        )
        return f"<table><caption style='text-align:left'>{esc(self.title)} ({len(self.rows)})</caption><tr>{head}</tr>{body}</table>"

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame, the table's headers as its columns (to sort, filter, plot)."""
        import pandas as pd

        return pd.DataFrame([{header: row.get(key) for key, header in self.columns} for row in self.rows],
                            columns=[header for _, header in self.columns])

    _repr_pretty_ = Shown._repr_pretty_

    def __repr__(self) -> str:
        return f"Listing({self.title!r}, rows={len(self.rows)})"
