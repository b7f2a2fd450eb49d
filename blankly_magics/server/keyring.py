"""The key that encrypts users' exchange keys at rest: a file of its own, never in the database.

The key file holds one or more 256-bit keys, one per line (base64url); the first
seals, every one opens. A sealed value is AES-256-GCM (``cryptography``) with a
fresh 96-bit nonce, bound to its row: the user, exchange and portfolio are the
associated data, so a sealed value moved to another user's row does not open.
Its layout: a version byte, the first 8 bytes of the key's SHA-256 (which key
sealed it), the nonce, then the ciphertext and its tag.

Default path ``DATA_DIR/exchange-keys.key``: a copy of the database alone reveals
no exchange key. ``--exchange-key-file`` puts it anywhere else (another disk, a
mounted secret), so a copy of the whole data dir reveals none either. Rotation (``rotate-exchange-key``,
rotation.py) is ``add_new_key``, ``KeyStore.reseal`` over the rows, then ``keep_only``:
see docs/server/security.md.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import Sequence

from ..files import atomic_write

KEY_FILE = "exchange-keys.key"
KEY_BYTES = 32
_VERSION = b"\x01"
_ID_BYTES = 8
_NONCE_BYTES = 12


class KeyRingError(Exception):
    """The key file cannot be used, or a sealed value cannot be opened; the message says why (no secret in it)."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_ID_BYTES]


class KeyRing:
    """The keys of one key file: ``keys[0]`` seals, any of them opens."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) != KEY_BYTES for k in keys):
            raise KeyRingError(f"a key ring needs {KEY_BYTES}-byte keys")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._keys = [(key_id(k), AESGCM(k)) for k in keys]
        self.size = len(keys)

    def __repr__(self) -> str:
        return f"KeyRing({self.size} key(s))"

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        ident, cipher = self._keys[0]
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + ident + nonce + cipher.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        head = 1 + _ID_BYTES
        if len(sealed) < head + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            raise KeyRingError("a stored value is damaged")
        ident, nonce, body = sealed[1:head], sealed[head:head + _NONCE_BYTES], sealed[head + _NONCE_BYTES:]
        for known, cipher in self._keys:
            if known == ident:
                try:
                    return cipher.decrypt(nonce, body, context)
                except InvalidTag:
                    raise KeyRingError("a stored value does not open (damaged, or moved from another row)") from None
        raise KeyRingError("a stored value was sealed with a key that is not in the key file")


def _encode(keys: Sequence[bytes]) -> str:
    lines = ["# blankly_magics exchange-key encryption keys: the first seals, every one opens. Keep it 0600."]
    lines += [base64.urlsafe_b64encode(k).decode("ascii") for k in keys]
    return "\n".join(lines) + "\n"


def read_keys(path: Path) -> list[bytes]:
    """The keys in ``path``; KeyRingError when it is missing, readable by others, or damaged."""
    try:
        info = os.stat(path)
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyRingError(f"the exchange key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyRingError(f"cannot read the exchange key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyRingError(f"the exchange key file {path} can be read by others "
                           f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 600 it")
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.urlsafe_b64decode(line.encode("ascii"))
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise KeyRingError(f"line {number} of the exchange key file {path} is not a {KEY_BYTES}-byte key")
        keys.append(key)
    if not keys:
        raise KeyRingError(f"the exchange key file {path} holds no key")
    return keys


def write_keys(path: Path, keys: Sequence[bytes]) -> None:
    """Replace the key file with ``keys`` (0600, atomically: the old file or the new one, never half)."""
    atomic_write(path, _encode(keys))


def load(path: Path, *, create: bool) -> KeyRing:
    """The key ring of ``path``, made with one new key first when it is missing and ``create``."""
    path = Path(path)
    if create and not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        atomic_write(tmp, _encode([secrets.token_bytes(KEY_BYTES)]))
        try:
            os.link(tmp, path)  # two processes starting at once agree on one key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return KeyRing(read_keys(path))


def add_new_key(path: Path) -> tuple[KeyRing, bytes]:
    """First step of a rotation: a new key first in the file, the old ones kept to open what they sealed."""
    old = read_keys(path)
    new = secrets.token_bytes(KEY_BYTES)
    write_keys(path, [new, *old])
    return KeyRing([new, *old]), new


def keep_only(path: Path, key: bytes) -> None:
    """Last step of a rotation: every value is sealed with ``key`` now; the old keys go."""
    write_keys(path, [key])
