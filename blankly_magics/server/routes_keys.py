"""Routes under /keys/: a user's stored exchange keys. Names go out, values never do.

``POST /keys/set`` takes Blankly's keys.json shape as JSON, ``{"keys": {exchange:
{portfolio: {FIELD: value}}}}``, and stores every portfolio in it at once (placeholders
skipped); ``GET /keys/list`` names what is stored; ``POST /keys/delete`` removes one
portfolio, or every portfolio of an exchange.
"""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from .keystore import KeysError, check_name, parse_keys
from .store import User
from .web import ApiError, field_text, read_fields, server_of


async def keys_list(request: Request, user: User) -> dict[str, Any]:
    return {"keys": [entry.to_api() for entry in server_of(request).keys.names(user.id)]}


def _named(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"exchange": exchange, "portfolio": portfolio} for exchange, portfolio in pairs]


async def keys_set(request: Request, user: User) -> dict[str, Any]:
    fields = await read_fields(request)
    data = fields.get("keys")
    if isinstance(data, str):  # a form field carries the object as JSON text
        try:
            data = json.loads(data)
        except ValueError:
            raise ApiError(400, "field 'keys' is not valid JSON") from None
    if data is None:
        raise ApiError(400, "missing required field 'keys' (keys.json's object)")
    try:
        entries, skipped = parse_keys(data)
    except KeysError as exc:
        raise ApiError(400, str(exc)) from None
    if not entries:
        raise ApiError(400, "nothing to store: every value is empty or Blankly's ***** placeholder")
    server_of(request).keys.store(user.id, entries)
    return {"status": "success", "stored": _named(sorted(entries)), "skipped": _named(skipped)}


async def keys_delete(request: Request, user: User) -> dict[str, Any]:
    fields = await read_fields(request)
    try:
        exchange = check_name("exchange", field_text(fields, "exchange", required=True, limit=200))
        portfolio = field_text(fields, "portfolio", limit=200) or None
        if portfolio is not None:
            check_name("portfolio", portfolio)
    except KeysError as exc:
        raise ApiError(400, str(exc)) from None
    gone = server_of(request).keys.delete(user.id, exchange, portfolio)
    if not gone:
        raise ApiError(404, f"no stored keys for {exchange}/{portfolio}" if portfolio else
                       f"no stored keys for {exchange}")
    return {"status": "success", "deleted": _named(gone)}
