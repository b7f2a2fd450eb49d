"""What a live model reported (its orders, account values, live variables, notifications), gathered
from ``/model/activity`` pages and shown as an orders table and an account-value chart.

Plain Python: ``Activity.add(page)`` merges one answer of the route (an order's later
update merges into the order by id); ``Activity`` shows itself in IPython as a table
(text or HTML) with the chart when matplotlib is there. No repr holds more than ids
and counts.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .charts import account_values_frame, equity_figure, figure_png, points
from .formats import time_text
from .results import Shown, esc, format_value

ORDER_COLUMNS = (("time", "time"), ("side", "side"), ("symbol", "symbol"), ("size", "size"), ("price", "price"),
                 ("type", "type"), ("status", "status"), ("id", "id"))


def _cell(order: dict, key: str) -> str:
    value = order.get(key)
    if value is None:
        return ""
    if key == "time":
        return time_text(value)
    return format_value(value) if isinstance(value, (int, float)) else str(value)


def orders_text(orders: Sequence[dict], title: str) -> str:
    """The orders as an aligned text table (empty orders: one line saying so)."""
    if not orders:
        return f"{title}: none yet"
    headers = [h for _, h in ORDER_COLUMNS]
    table = [[_cell(o, k) for k, _ in ORDER_COLUMNS] for o in orders]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    lines = [f"{title} ({len(orders)})", "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines)


def order_line(order: dict) -> str:
    """One order as a line (what ``--follow`` prints as each one comes)."""
    return "  ".join(_cell(order, k) for k, _ in ORDER_COLUMNS if _cell(order, k))


def orders_html(orders: Sequence[dict], title: str) -> str:
    if not orders:
        return f"<p>{esc(title)}: none yet</p>"
    head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for _, h in ORDER_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{esc(_cell(o, k))}</td>" for k, _ in ORDER_COLUMNS)
                   + "</tr>" for o in orders)
    return (f"<table class='blankly-orders'><caption style='text-align:left'>{esc(title)} ({len(orders)})"
            f"</caption><tr>{head}</tr>{body}</table>")


@dataclass(repr=False)
class Activity(Shown):
    """A live model's activity as read so far; ``cursor`` is where the next page starts."""

    model_id: str
    orders: dict = field(default_factory=dict)  # id -> order, in the order they were placed
    account_values: list = field(default_factory=list)  # [{"time", "value", "quote"}]
    variables: dict = field(default_factory=dict)  # name -> its last {"time", "value", "description"}
    notifications: list = field(default_factory=list)  # [{"time", "kind", "message"}]
    cursor: int = 0
    shown_orders: int = 20  # how many of the last orders the table shows
    _png: Optional[bytes] = field(default=None, compare=False)

    def add(self, page: dict) -> list[dict]:
        """Merge one answer of /model/activity; the orders it brought or changed."""
        if page.get("reset"):  # a new run of the model began: what was read belongs to the last one
            self.orders, self.account_values, self.variables, self.notifications = {}, [], {}, []
        changed = []
        for order in page.get("orders") or ():
            key = str(order.get("id") or f"#{len(self.orders)}")
            known = self.orders.get(key)
            update = {k: v for k, v in order.items() if k != "update" and (v is not None or known is None)}
            if known is not None and order.get("update"):
                update.pop("time", None)  # an order keeps the time it was placed
            self.orders[key] = {**known, **update} if known else update
            changed.append(self.orders[key])
        self.account_values += list(page.get("accountValues") or ())
        for variable in page.get("vars") or ():
            self.variables[str(variable.get("name"))] = variable
        self.notifications += list(page.get("notifications") or ())
        self.cursor = int(page.get("next") or self.cursor)
        self._png = None
        return changed

    @property
    def order_list(self) -> list[dict]:
        return list(self.orders.values())

    @property
    def quote(self) -> Optional[str]:
        return next((v.get("quote") for v in reversed(self.account_values) if v.get("quote")), None)

    def frame(self) -> Any:
        """The account values as a DataFrame (time, value) when pandas is there."""
        return account_values_frame([{"time": v.get("time"), "value": v.get("value")} for v in self.account_values])

    def figure(self) -> Any:
        return equity_figure(self.frame(), title=f"Model {self.model_id}: account value", quote=self.quote)

    def chart_png(self) -> Optional[bytes]:
        if self._png is None and len(points(self.frame())) >= 2:
            try:
                self._png = figure_png(self.figure())
            except ImportError:
                return None
        return self._png

    def _summary(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = []
        if self.account_values:
            last = self.account_values[-1]
            rows.append(("account value", f"{format_value(last.get('value'))} {last.get('quote') or ''}".strip()))
        rows += [(f"var {name}", format_value(v.get("value"))) for name, v in self.variables.items()]
        rows += [(f"{n.get('kind')} at {time_text(n.get('time'))}", n.get("message")) for n in self.notifications[-5:]]
        return rows

    def _title(self) -> str:
        shown = self.order_list[-self.shown_orders:]
        more = f", the last {len(shown)} of {len(self.orders)}" if len(shown) < len(self.orders) else ""
        return f"Orders of model {self.model_id}{more}"

    def to_text(self) -> str:
        lines = [orders_text(self.order_list[-self.shown_orders:], self._title())]
        lines += [f"{name}: {value}" for name, value in self._summary()]
        return "\n".join(lines)

    def to_html(self) -> str:
        parts = ["<div class='blankly-activity'>", orders_html(self.order_list[-self.shown_orders:], self._title())]
        summary = self._summary()
        if summary:
            parts.append("<p>" + "<br/>".join(f"{esc(k)}: <b>{esc(v)}</b>" for k, v in summary) + "</p>")
        png = self.chart_png()
        if png:
            parts.append(f"<img alt='account value' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>")
        return "".join(parts) + "</div>"

    _repr_pretty_ = Shown._repr_pretty_

    def __repr__(self) -> str:
        return (f"Activity(model_id={self.model_id!r}, orders={len(self.orders)}, "
                f"account_values={len(self.account_values)})")
