"""What a live model reported, as ``GET /model/activity`` answers it: its orders, account values,
live variables and notifications, in the order they happened, a page at a time.

The source is the hook's ``events.jsonl`` of the model's current (or last) live run,
read through ``Runner.live_report``. A page's ``next`` is the cursor of the next one
(``since``); a ``since`` beyond the end means a new run began, and the page starts
over (``reset``). An order is one entry per id: where it was placed and every later
update (status, fill price) met in the same page are merged into it; an update
whose order was on an earlier page comes as an entry with ``"update": true``, which
a reader merges into the order it has by id.
"""
from __future__ import annotations

import json
import math
from typing import Any, Optional

from .state import Server

EVENTS = "events.jsonl"
ORDER_FIELDS = ("time", "symbol", "side", "size", "price", "type", "id", "status", "exchange")
MAX_RECENT = 1000
_NOTIFICATIONS = ("email", "text")


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _parse(data: bytes) -> list[dict[str, Any]]:
    events = []
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line the run garbled: the others still count
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            events.append(event)
    return events


class _Orders:
    """Orders by id, in the order they were placed (or first heard of)."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}

    def entry(self, order: dict[str, Any], when: Any) -> dict[str, Any]:
        key = str(order.get("id") or f"#{len(self.by_id)}")
        if key not in self.by_id:
            self.by_id[key] = {name: None for name in ORDER_FIELDS} | {"id": order.get("id"), "time": when}
        return self.by_id[key]

    def placed(self, kind: str, event: dict[str, Any]) -> None:
        order = event.get("order") if isinstance(event.get("order"), dict) else {}
        entry = self.entry(order, event.get("time"))
        entry.pop("update", None)
        entry.update(time=event.get("time"), symbol=order.get("symbol"), side=order.get("side"),
                     size=_number(order.get("size")), type=kind,
                     exchange=order.get("exchange") or event.get("exchange"))
        if _number(order.get("price")) is not None:
            entry["price"] = _number(order["price"])

    def updated(self, event: dict[str, Any]) -> None:
        order = event.get("order") if isinstance(event.get("order"), dict) else {}
        known = str(order.get("id")) in self.by_id
        entry = self.entry(order, event.get("time"))
        if not known:
            entry["update"] = True
        for name in ("status", "symbol", "side", "type"):
            if order.get(name) not in (None, ""):
                entry[name] = order[name]
        if _number(order.get("price")) is not None:
            entry["price"] = _number(order["price"])

    def listed(self) -> list[dict[str, Any]]:
        return sorted(self.by_id.values(), key=lambda o: _number(o.get("time")) or 0.0)


def shape(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The page's events as the route answers them."""
    orders = _Orders()
    values: list[dict[str, Any]] = []
    live_vars: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for event in events:
        kind, when = event["event"], event.get("time")
        if kind in ("market_order", "limit_order"):
            orders.placed(kind.split("_")[0], event)
        elif kind == "order_update":
            orders.updated(event)
        elif kind == "account_value" and _number(event.get("value")) is not None:
            values.append({"time": when, "value": _number(event["value"]), "quote": event.get("quote")})
        elif kind == "live_var":
            live_vars.append({"time": when, "name": event.get("name"), "value": event.get("value"),
                              "description": event.get("description")})
        elif kind in _NOTIFICATIONS:
            notes.append({"time": when, "kind": kind, "message": event.get("message")})
    return {"orders": orders.listed(), "accountValues": values, "vars": live_vars, "notifications": notes}


def model_activity(server: Server, model_id: str, since: int, recent: Optional[int]) -> dict[str, Any]:
    """One page of the model's activity from byte ``since``; with ``recent``, the end of it (at most
    ``recent`` orders) and the cursor to follow it from there."""
    page = server.runner.live_report(model_id, EVENTS, since, tail=recent is not None)
    out = shape(_parse(page.data))
    if recent is not None:
        out["orders"] = out["orders"][-recent:] if recent else []
    out.update(modelId=model_id, since=page.offset, next=page.next, size=page.size,
               more=page.next < page.size, reset=recent is None and since > page.offset)
    return out
