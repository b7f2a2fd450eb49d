"""``python -m blankly_magics.server rotate-exchange-key``: a new key for the stored exchange keys.

With the data dir locked (no server running), three steps, each safe to be interrupted:
the key file gets a new key first (the old one stays, so every value still opens),
every stored value is sealed again with the new key in one transaction, then the
old key leaves the file. Running the command again finishes an interrupted rotation.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path


def exchange_key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exchange-key-file", type=Path, default=None, metavar="FILE",
        help="the key that encrypts users' stored exchange keys (default DATA_DIR/exchange-keys.key, made on "
        "first start); keep it apart from the data dir's backups. Rotate it with rotate-exchange-key",
    )


def rotate_parser() -> argparse.ArgumentParser:
    from .config import default_data_dir

    parser = argparse.ArgumentParser(
        prog="python -m blankly_magics.server rotate-exchange-key",
        description="Replace the key that encrypts users' stored exchange keys: every stored value is "
        "encrypted again with a new key and the old key leaves the key file. Stop the server first; "
        "an interrupted rotation is finished by running it again.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help=f"the server's data dir (default {default_data_dir()}, or $BLANKLY_MAGICS_HOME)")
    exchange_key_option(parser)
    return parser


def rotate_exchange_key(args: argparse.Namespace) -> int:
    from . import keyring
    from .__main__ import _lock_data_dir
    from .config import ServerConfig, default_data_dir
    from .keystore import open_keys
    from .store import Store

    os.umask(0o077)
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    path = ServerConfig(data_dir, exchange_key_file=args.exchange_key_file).exchange_key_path
    lock = _lock_data_dir(data_dir) if data_dir.is_dir() else None
    if lock is None:
        print(f"error: {data_dir} is not a data dir, or a server is using it: stop the server first", file=sys.stderr)
        return 2
    try:
        with Store(data_dir) as store:
            keys = open_keys(store, path)
            ring, new = keyring.add_new_key(path)  # from here on, both keys open every value
            count = keys.reseal(ring)
            keyring.keep_only(path, new)
    except (keyring.KeyRingError, OSError, sqlite3.Error) as exc:
        print(f"error: {exc}; nothing is lost: run the rotation again", file=sys.stderr)
        return 1
    print(f"{count} stored exchange key(s) encrypted again with a new key; {path} holds only the new key")
    return 0
