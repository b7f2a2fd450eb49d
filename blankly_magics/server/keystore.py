"""Users' exchange keys: kept sealed per user, exchange and portfolio, and handed to their runs.

What users send is Blankly's ``keys.json`` shape, ``{exchange: {portfolio: {FIELD: value}}}``
(``sandbox`` a boolean). Blankly's ``*****`` placeholders are skipped. The values are
sealed (keyring.py) before they reach the database; the field names, which are not
secret, stay readable so a listing never opens a value. Nothing here puts a value in
an error, a log line or a repr.

A run of the owner's gets ``keys.json`` in its working directory: the zip's own
keys.json (its placeholders) with the owner's stored keys merged over it
(``run_secret_files``, the executor's ``RunRequest.secret_files``).
"""
from __future__ import annotations

import json
import posixpath
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import keyring
from .database import Database
from .keyring import KeyRing, KeyRingError

KEYS_NAME = "keys.json"
MAX_PORTFOLIOS = 200
MAX_VALUE_CHARS = 8192
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_ZIP_KEYS_MAX = 1 << 20

Keys = dict[str, dict[str, dict[str, Any]]]  # exchange -> portfolio -> field -> value


class KeysError(ValueError):
    """Keys that cannot be stored; the message names the exchange, portfolio or field, never a value."""


def is_placeholder(value: Any) -> bool:
    """Blankly's ``*****`` (or an empty string): a field with nothing in it."""
    return isinstance(value, str) and set(value.strip()) <= {"*"}


def check_name(kind: str, name: Any) -> str:
    """An exchange or portfolio name: 1-100 printable characters."""
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or name != name.strip() \
            or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        shown = repr(name)[:60] if isinstance(name, str) else type(name).__name__
        raise KeysError(f"{kind} name {shown} must be 1-100 printable characters")
    return name


def _fields(exchange: str, portfolio: str, raw: Any) -> Optional[dict[str, Any]]:
    """One portfolio's fields, placeholders left out; None when nothing real is left."""
    where = f"{exchange}/{portfolio}"
    if not isinstance(raw, dict):
        raise KeysError(f"{where} must be an object of fields such as API_KEY and API_SECRET")
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _FIELD_RE.match(name):
            raise KeysError(f"{where} has a field named {str(name)[:40]!r}: use letters, digits and _")
        if isinstance(value, bool) or (isinstance(value, (int, float)) and name == "sandbox"):
            fields[name] = bool(value) if name == "sandbox" else value
        elif isinstance(value, str):
            if is_placeholder(value):
                continue
            if len(value) > MAX_VALUE_CHARS or "\x00" in value:
                raise KeysError(f"{where} field {name} is longer than {MAX_VALUE_CHARS} characters or holds NUL")
            fields[name] = value
        elif isinstance(value, (int, float)):
            fields[name] = value
        else:
            raise KeysError(f"{where} field {name} must be text (or true/false for sandbox)")
    return fields if any(k != "sandbox" for k in fields) else None


def parse_keys(data: Any) -> tuple[dict[tuple[str, str], dict[str, Any]], list[tuple[str, str]]]:
    """``({(exchange, portfolio): fields}, [portfolios holding only placeholders])``; KeysError when malformed."""
    if not isinstance(data, dict) or not data:
        raise KeysError("expected keys.json's shape: {\"exchange\": {\"portfolio\": {\"API_KEY\": ..., ...}}}")
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: list[tuple[str, str]] = []
    for exchange, portfolios in data.items():
        check_name("exchange", exchange)
        if not isinstance(portfolios, dict):
            raise KeysError(f"{exchange} must be an object of portfolios, each an object of fields")
        for portfolio, raw in portfolios.items():
            check_name("portfolio", portfolio)
            fields = _fields(exchange, portfolio, raw)
            if fields is None:
                skipped.append((exchange, portfolio))
            else:
                entries[(exchange, portfolio)] = fields
    if len(entries) > MAX_PORTFOLIOS:
        raise KeysError(f"at most {MAX_PORTFOLIOS} portfolios can be stored at once, not {len(entries)}")
    return entries, skipped


@dataclass(frozen=True)
class KeyEntry:
    """One stored portfolio, as a listing shows it: names only."""

    exchange: str
    portfolio: str
    fields: tuple[str, ...]
    sandbox: Optional[bool]
    updated_at: float

    def to_api(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "portfolio": self.portfolio, "fields": list(self.fields),
                "sandbox": self.sandbox, "updatedAt": self.updated_at}


def _context(user_id: str, exchange: str, portfolio: str) -> bytes:
    return "\x00".join((user_id, exchange, portfolio)).encode("utf-8")


class KeyStore:
    """The exchange_keys table, every value sealed by ``ring``."""

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self.db = db
        self.ring = ring

    def __repr__(self) -> str:
        return f"KeyStore({self.ring!r})"

    def names(self, user_id: str) -> list[KeyEntry]:
        rows = self.db._all("SELECT exchange, portfolio, fields, sandbox, updated_at FROM exchange_keys "
                            "WHERE user_id = ? ORDER BY exchange, portfolio", (user_id,))
        return [KeyEntry(r["exchange"], r["portfolio"], tuple(json.loads(r["fields"])),
                         None if r["sandbox"] is None else bool(r["sandbox"]), r["updated_at"]) for r in rows]

    def store(self, user_id: str, entries: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Store (or replace) every portfolio given, in one transaction: all of them or none."""
        now = time.time()
        with self.db.transaction():
            for (exchange, portfolio), fields in entries.items():
                sealed = self.ring.seal(json.dumps(fields).encode("utf-8"), _context(user_id, exchange, portfolio))
                sandbox = fields.get("sandbox")
                self.db._conn.execute(
                    "INSERT OR REPLACE INTO exchange_keys (user_id, exchange, portfolio, fields, sandbox, sealed,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (user_id, exchange, portfolio, json.dumps(sorted(fields)),
                     None if sandbox is None else int(bool(sandbox)), sealed, now))

    def delete(self, user_id: str, exchange: str, portfolio: Optional[str] = None) -> list[tuple[str, str]]:
        """Delete one portfolio, or every portfolio of an exchange; the (exchange, portfolio) pairs gone."""
        where, args = "user_id = ? AND exchange = ?", [user_id, exchange]
        if portfolio is not None:
            where += " AND portfolio = ?"
            args.append(portfolio)
        with self.db.transaction():
            gone = [(r["exchange"], r["portfolio"]) for r in
                    self.db._all(f"SELECT exchange, portfolio FROM exchange_keys WHERE {where}", tuple(args))]
            self.db._conn.execute(f"DELETE FROM exchange_keys WHERE {where}", tuple(args))
        return gone

    def values(self, user_id: str) -> Keys:
        """The user's stored keys, opened (for a run of theirs only)."""
        out: Keys = {}
        rows = self.db._all("SELECT exchange, portfolio, sealed FROM exchange_keys WHERE user_id = ?", (user_id,))
        for row in rows:
            plain = self.ring.open(bytes(row["sealed"]), _context(user_id, row["exchange"], row["portfolio"]))
            out.setdefault(row["exchange"], {})[row["portfolio"]] = json.loads(plain)
        return out

    def count(self) -> int:
        return self.db._one("SELECT COUNT(*) AS n FROM exchange_keys")["n"]

    def reseal(self, ring: KeyRing) -> int:
        """Seal every stored value again with ``ring``'s first key (a rotation), in one transaction."""
        with self.db.transaction():
            rows = self.db._all("SELECT user_id, exchange, portfolio, sealed FROM exchange_keys")
            for row in rows:
                context = _context(row["user_id"], row["exchange"], row["portfolio"])
                sealed = ring.seal(self.ring.open(bytes(row["sealed"]), context), context)
                self.db._conn.execute(
                    "UPDATE exchange_keys SET sealed = ? WHERE user_id = ? AND exchange = ? AND portfolio = ?",
                    (sealed, row["user_id"], row["exchange"], row["portfolio"]))
        self.ring = ring
        return len(rows)


def open_keys(db: Database, path: Path) -> KeyStore:
    """The key store over ``db`` with the key file at ``path`` (made on first use); KeyRingError when the
    database holds sealed values and the key file is missing or unusable: they would never open again."""
    rows = db._one("SELECT COUNT(*) AS n FROM exchange_keys")["n"]
    if rows and not Path(path).exists():
        raise KeyRingError(f"the database holds {rows} stored exchange key(s) but their key file {path} is "
                           "missing: restore it, or point --exchange-key-file at it")
    return KeyStore(db, keyring.load(path, create=True))


def zip_keys_json(zip_path: Path, working_directory: str) -> Optional[dict[str, Any]]:
    """The keys.json the version's zip carries beside its script (placeholders, usually), if any."""
    name = posixpath.normpath(posixpath.join("model", working_directory or ".", KEYS_NAME))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            info = zf.getinfo(name)
            if info.file_size > _ZIP_KEYS_MAX:
                return None
            data = json.loads(zf.read(info))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return None
    return data if isinstance(data, dict) else None


def merge_keys(base: Optional[dict[str, Any]], stored: Keys) -> dict[str, Any]:
    """``stored`` over ``base``: a stored portfolio's fields replace the same fields of the zip's."""
    out: dict[str, Any] = json.loads(json.dumps(base)) if isinstance(base, dict) else {}
    for exchange, portfolios in stored.items():
        target = out.get(exchange)
        if not isinstance(target, dict):
            target = out[exchange] = {}
        for portfolio, fields in portfolios.items():
            known = target.get(portfolio)
            target[portfolio] = {**(known if isinstance(known, dict) else {}), **fields}
    return out


def run_secret_files(keys: KeyStore, user_id: str, zip_path: Path, working_directory: str) -> dict[str, bytes]:
    """What a run of ``user_id`` gets as secret files: ``{"keys.json": ...}``, or nothing when neither they
    stored keys nor the zip carries a keys.json."""
    from .runner import RunFailed

    try:
        stored = keys.values(user_id) if user_id else {}
    except KeyRingError as exc:
        raise RunFailed(f"the server cannot open your stored exchange keys ({exc}); store them again "
                        "with `keys import` or delete them with `keys delete`") from None
    own = zip_keys_json(zip_path, working_directory)
    if not stored and own is None:
        return {}
    # Written at every start even with nothing stored: a restart then finds the zip's placeholders again.
    merged = merge_keys(own, stored)
    return {KEYS_NAME: (json.dumps(merged, indent=2) + "\n").encode("utf-8")}
