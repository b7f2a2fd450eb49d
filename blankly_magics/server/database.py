"""The server's one SQLite connection: WAL, a lock, transactions, and checkpoints off the event loop.

One connection guarded by a lock: requests run on the event loop and worker
threads, the runner reports from its own threads, and SQLite serialises writers
anyway.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from ..files import private_dir
from .schema import create_schema

DB_NAME = "blankly.db"
CHECKPOINT_COMMITS = 200  # commits between background checkpoints (a few hundred WAL pages)
CHECKPOINT_SECONDS = 5.0  # and at least this often while the server runs
WAL_MAX_PAGES = 4000  # a WAL longer than this (16 MB) is truncated, holding writers off meanwhile

log = logging.getLogger("blankly_magics.server")


class _Checkpointer:
    """Checkpoints the WAL from its own thread and connection, so that no commit waits for it.

    SQLite's automatic checkpoint runs inside the commit that crosses 1000 WAL pages and
    fsyncs the WAL and the database there: on the server that is the event loop, stalled
    for up to 100 ms (measured) every few hundred uploads. A passive checkpoint here never
    blocks the writer; it runs every CHECKPOINT_COMMITS commits and every few seconds.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self._path), timeout=15.0, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("cannot checkpoint the database (%s); its WAL file will grow", exc)
            return
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            while True:
                self._wake.wait(CHECKPOINT_SECONDS)
                self._wake.clear()
                try:
                    _, wal_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if wal_pages > WAL_MAX_PAGES:
                        # Writes kept coming while it ran, so the WAL never got to start over:
                        # hold them off once (as SQLite's own checkpoint would) and truncate it.
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                except sqlite3.Error as exc:  # a full disk, say: the WAL just grows meanwhile
                    log.warning("could not checkpoint the database: %s", exc)
                if self._stopping:
                    return
        finally:
            conn.close()


class Database:
    """The connection to ``blankly.db`` in the data dir; safe to share between threads.

    ``background_checkpoints``: checkpoint the WAL on a thread of its own instead of in
    the commits (for the long-running server; a short-lived user keeps SQLite's way).
    """

    def __init__(self, data_dir: Path, *, background_checkpoints: bool = False) -> None:
        self.data_dir = private_dir(Path(data_dir))
        path = self.data_dir / DB_NAME
        # Create the file 0600 ourselves: SQLite would use the umask, and gives the
        # -wal/-shm files the database file's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(path), timeout=15.0, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is safe from a killed process (SIGKILL) but is fsynced only
        # at checkpoints, so an OS crash or power cut may lose the last commits (never the
        # database's consistency). FULL would fsync every commit: about 3 ms each here.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._commits = 0
        self._checkpointer: Optional[_Checkpointer] = None
        with self.transaction():
            create_schema(self._conn)
        if background_checkpoints:
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(path)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator["Database"]:
        """One write transaction (nested calls join the outer one)."""
        with self._lock:
            if self._conn.in_transaction:
                yield self
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._commits += 1
            if self._checkpointer is not None and self._commits % CHECKPOINT_COMMITS == 0:
                self._checkpointer.nudge()

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple = ()) -> Optional[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self.transaction():
            return self._conn.execute(sql, args).rowcount
