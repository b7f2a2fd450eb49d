"""Exchange keys kept by the server: list their names, import a Blankly keys.json, set one
portfolio field by field, delete.

Values travel only from here to the server (``POST /keys/set``), never back: the
listing names exchanges, portfolios and fields. Nothing here prints, logs or keeps a
value; the face that asks for one (``ask``) must not echo it (getpass, a password box).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import BlanklyError
from ..listing import Listing

if TYPE_CHECKING:
    from ..session import Session

# The fields each exchange's keys.json entry has, as Blankly reads them ("sandbox" besides).
EXCHANGE_FIELDS: dict[str, tuple[str, ...]] = {
    "alpaca": ("API_KEY", "API_SECRET"),
    "binance": ("API_KEY", "API_SECRET"),
    "binance_futures": ("API_KEY", "API_SECRET"),
    "coinbase_advanced": ("API_KEY", "API_SECRET", "API_PASS"),
    "coinbase_pro": ("API_KEY", "API_SECRET", "API_PASS"),
    "ftx": ("API_KEY", "API_SECRET"),
    "ftx_futures": ("API_KEY", "API_SECRET"),
    "kucoin": ("API_KEY", "API_SECRET", "API_PASS"),
    "oanda": ("PERSONAL_ACCESS_TOKEN", "ACCOUNT_ID"),
    "okx": ("API_KEY", "API_SECRET", "API_PASS"),
}


class KeysError(BlanklyError, ValueError):
    """Keys that cannot be read or stored as asked; one line that names no value."""


def fields_for(exchange: str) -> tuple[str, ...]:
    """The fields ``exchange``'s keys have; KeysError for an exchange this does not know."""
    try:
        return EXCHANGE_FIELDS[exchange]
    except KeyError:
        raise KeysError(f"unknown exchange {exchange!r}: keys set knows {', '.join(EXCHANGE_FIELDS)}; "
                        "for another, store a keys.json with `keys import PATH`") from None


def _names(pairs: list) -> str:
    return ", ".join(f"{p.get('exchange')}/{p.get('portfolio')}" for p in pairs)


def list_keys(session: "Session") -> Listing:
    """What the server keeps for this user: exchanges, portfolios and field names, never a value."""
    cols = [("exchange", "exchange"), ("portfolio", "portfolio"), ("fields", "fields"), ("sandbox", "sandbox"),
            ("updatedAt", "stored")]
    rows = [dict(k, fields=", ".join(k.get("fields") or ())) for k in session.client.keys()]
    return Listing("Stored exchange keys", cols, rows)


def read_keys_file(path: str | Path) -> dict:
    """A Blankly keys.json as a dict; KeysError naming what is wrong (never what it holds)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeysError(f"{path} does not exist: give the path of a Blankly keys.json") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysError(f"cannot read {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KeysError(f"{path} is not JSON (line {getattr(exc, 'lineno', '?')}): it needs Blankly's keys.json "
                        "shape {\"exchange\": {\"portfolio\": {\"API_KEY\": ...}}}") from None
    if not isinstance(data, dict):
        raise KeysError(f"{path} must hold a JSON object of exchanges, as Blankly's keys.json does")
    return data


def _stored(answer: dict, source: str) -> str:
    line = f"Stored on the server from {source}: {_names(answer.get('stored') or [])}"
    skipped = answer.get("skipped") or []
    if skipped:
        line += f"; skipped (only ***** placeholders): {_names(skipped)}"
    return line


def import_keys(session: "Session", path: str | Path) -> str:
    """Store every exchange and portfolio of a keys.json (placeholders skipped); the line to show."""
    return _stored(session.client.set_keys(read_keys_file(path)), str(path))


def set_keys(session: "Session", exchange: str, portfolio: str, ask: Callable[[str], str], *,
             sandbox: bool = False) -> str:
    """Ask each field ``exchange`` needs (``ask`` must not echo), then store them; the line to show."""
    values: dict[str, object] = {}
    for name in fields_for(exchange):
        value = (ask(f"{exchange}/{portfolio} {name}: ") or "").strip()
        if not value:
            raise KeysError(f"no {name} given: nothing was stored")
        values[name] = value
    values["sandbox"] = sandbox
    return _stored(session.client.set_keys({exchange: {portfolio: values}}), "what you typed")


def delete_keys(session: "Session", exchange: str, portfolio: Optional[str] = None) -> str:
    answer = session.client.delete_keys(exchange, portfolio)
    return f"Deleted from the server: {_names(answer.get('deleted') or [])}"
