"""Refresh tokens (random, stored only as hashes) and signed, short-lived idTokens.

An idToken is ``<payload>.<signature>``: base64url JSON ``{"u": user id,
"s": refresh-token id, "exp": epoch seconds}`` and its HMAC-SHA256 under a key
generated once into the data dir. Carrying the refresh token's id lets a
logout revoke the idTokens exchanged from it too.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

KEY_FILE = "signing.key"
_KEY_BYTES = 32
_MAX_TOKEN_CHARS = 2048  # far above a real idToken; longer input is rejected unread
_VERIFIED_CACHE = 4096  # genuine idTokens remembered at once (only the server can make one)


class InvalidToken(Exception):
    """An idToken that is malformed, forged or expired; the message says which (no token in it)."""


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The only form in which a refresh token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def load_signing_key(data_dir: str | Path) -> bytes:
    """Read the data dir's signing key, creating it (0600) on first use.

    Created under a temporary name and hard-linked into place, so two processes
    starting at once agree on one key and nobody reads a half-written file.
    """
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise RuntimeError(f"{path} is damaged ({len(key)} bytes); delete it to make a new one")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class IdClaims:
    user_id: str
    session_id: str  # the refresh token's row id
    expires: int


class IdTokens:
    """Issues and checks idTokens with one key and one lifetime."""

    def __init__(self, key: bytes, ttl: int = 3600) -> None:
        self._key = key
        self.ttl = int(ttl)
        self._verified: dict[str, IdClaims] = {}  # genuine tokens seen: see verify()

    def __repr__(self) -> str:
        return f"IdTokens(ttl={self.ttl})"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, user_id: str, session_id: str, now: Optional[float] = None) -> str:
        exp = int((time.time() if now is None else now) + self.ttl)
        body = json.dumps({"u": user_id, "s": session_id, "exp": exp}, separators=(",", ":"))
        payload = _b64(body.encode("utf-8"))
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, now: Optional[float] = None) -> IdClaims:
        """The claims of a genuine, unexpired idToken; InvalidToken otherwise.

        Every request carries one, mostly the same few: a checked token's claims are
        remembered (they cannot change), only its expiry is checked again each time.
        """
        claims = self._verified.get(token)
        if claims is None:
            claims = self._check(token)
            if len(self._verified) >= _VERIFIED_CACHE:
                self._verified.clear()
            self._verified[token] = claims
        if claims.expires <= (time.time() if now is None else now):
            raise InvalidToken("the idToken has expired")
        return claims

    def _check(self, token: str) -> IdClaims:
        """Signature and payload of an idToken (not its expiry)."""
        if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
            raise InvalidToken("the idToken is malformed")
        payload, signature = token.split(".")
        try:
            payload.encode("ascii")
            signature.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("the idToken is malformed") from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise InvalidToken("the idToken's signature is not valid")
        try:
            claims = json.loads(_unb64(payload))
            user_id, session_id, exp = claims["u"], claims["s"], int(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InvalidToken("the idToken is malformed") from None
        return IdClaims(str(user_id), str(session_id), exp)


def issue_refresh_token(data_dir: str | Path, user: str = "local") -> str:
    """Create (if new) the local user ``user`` and return a new refresh token for it."""
    from .store import Store

    token = new_refresh_token()
    with Store(Path(data_dir)) as store:
        account = store.ensure_user(user)
        store.add_refresh_token(account.id, hash_token(token))
    return token
