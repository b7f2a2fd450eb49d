"""Everything the server remembers, kept in its SQLite database: the queries, by object.

Objects are read through their owner, so another user's id looks exactly like a missing
one. The records and their API shape are in ``records``, the tables in ``schema``, the
connection and its transactions in ``database``.
"""
from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Optional, Sequence

from ..files import private_dir
from .database import CHECKPOINT_COMMITS, DB_NAME, Database
from .records import TERMINAL, Backtest, Deployment, Model, Project, Sweep, User, Version, json_safe, summary_of
from .rows import dumps as _dumps, loads as _loads, record as _record
from .sweep_store import SweepQueries

__all__ = [
    "CHECKPOINT_COMMITS", "DB_NAME", "TERMINAL", "TMP_DIR", "VERSIONS_DIR", "Backtest", "Deployment", "Model",
    "Project", "Store", "Sweep", "User", "Version", "json_safe", "new_id", "private_dir",
]

VERSIONS_DIR = "versions"
TMP_DIR = "tmp"
SESSION_CACHE_SECONDS = 10.0  # how long a standing sign-in is trusted without asking the database
_SESSION_CACHE_SIZE = 4096


def new_id() -> str:
    return uuid.uuid4().hex


# What a runner report may set (the columns are named as the keys).
_BACKTEST_FIELDS = ("status", "started_at", "ended_at", "exit_code", "error", "result")
_LIVE_FIELDS = ("state", "version_id", "pid", "since", "exit_code", "restarts", "error", "log_tail")


class Store(SweepQueries, Database):
    """The server's database and its queries; safe to share between threads."""

    def __init__(self, data_dir: Path, *, background_checkpoints: bool = False) -> None:
        super().__init__(data_dir, background_checkpoints=background_checkpoints)
        self._sessions: dict[tuple[str, str], tuple[User, float]] = {}  # see session_user

    def version_path(self, version: Version) -> Path:
        return self.data_dir / version.zip_name

    # -- users and tokens -----------------------------------------------------

    def ensure_user(self, name: str) -> User:
        """The user called ``name``, created with its personal project when new."""
        name = name.strip()
        if not name or len(name) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError("a user name must be 1-100 printable characters")
        with self.transaction():
            row = self._one("SELECT * FROM users WHERE name = ?", (name,))
            if row is not None:
                return _record(User, row)
            user = User(new_id(), name, time.time())
            self._conn.execute(
                "INSERT INTO users (id, name, created_at) VALUES (?, ?, ?)",
                (user.id, user.name, user.created_at),
            )
            # The personal project's id is the user's id, as on the hosted service.
            self._conn.execute(
                "INSERT INTO projects (id, owner_id, name, description, personal, created_at) "
                "VALUES (?, ?, ?, ?, 1, ?)",
                (user.id, user.id, "Personal", f"{name}'s personal project", user.created_at),
            )
            return user

    def user_names(self) -> list[str]:
        """Every user's name, oldest first."""
        return [row["name"] for row in self._all("SELECT name FROM users ORDER BY created_at")]

    def add_refresh_token(self, user_id: str, token_hash: str) -> str:
        session_id = new_id()
        self._write(
            "INSERT INTO refresh_tokens (id, user_id, token_hash, created_at) VALUES (?, ?, ?, ?)",
            (session_id, user_id, token_hash, time.time()),
        )
        return session_id

    def find_refresh_token(self, token_hash: str) -> Optional[tuple[str, User]]:
        """(session id, user) of a live refresh token, or None if unknown or revoked."""
        row = self._one(
            "SELECT t.id AS sid, u.* FROM refresh_tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token_hash = ? AND t.revoked_at IS NULL",
            (token_hash,),
        )
        return None if row is None else (row["sid"], _record(User, row))

    def revoke_refresh_token(self, token_hash: str, user_id: str) -> bool:
        with self.transaction():  # holds the lock: no lookup can cache the old answer meanwhile
            self._sessions.clear()
            return self._conn.execute(
                "UPDATE refresh_tokens SET revoked_at = ? "
                "WHERE token_hash = ? AND user_id = ? AND revoked_at IS NULL",
                (time.time(), token_hash, user_id),
            ).rowcount > 0

    def session_user(self, session_id: str, user_id: str) -> Optional[User]:
        """The user of an idToken, if its refresh token still stands.

        Asked on every request, so a standing sign-in is remembered for a few seconds.
        Revoking goes through this object, which forgets them all at once: a logout takes
        effect immediately (only a database edited by hand waits SESSION_CACHE_SECONDS).
        """
        key = (session_id, user_id)
        known = self._sessions.get(key)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        with self._lock:
            row = self._conn.execute(
                "SELECT u.* FROM refresh_tokens t JOIN users u ON u.id = t.user_id "
                "WHERE t.id = ? AND t.user_id = ? AND t.revoked_at IS NULL",
                (session_id, user_id),
            ).fetchone()
            if row is None:
                return None
            user = _record(User, row)
            if len(self._sessions) >= _SESSION_CACHE_SIZE:
                self._sessions.clear()
            self._sessions[key] = (user, time.monotonic() + SESSION_CACHE_SECONDS)
            return user

    # -- projects -------------------------------------------------------------

    @staticmethod
    def _project(row: sqlite3.Row) -> Project:
        return _record(Project, row, personal=bool(row["personal"]))

    def create_project(self, owner_id: str, name: str, description: str) -> Project:
        project = Project(new_id(), owner_id, name, description, False, time.time())
        self._write(
            "INSERT INTO projects (id, owner_id, name, description, personal, created_at) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            (project.id, owner_id, name, description, project.created_at),
        )
        return project

    def list_projects(self, owner_id: str) -> list[Project]:
        rows = self._all(
            "SELECT * FROM projects WHERE owner_id = ? ORDER BY personal DESC, created_at, id",
            (owner_id,),
        )
        return [self._project(r) for r in rows]

    def get_project(self, owner_id: str, project_id: str) -> Optional[Project]:
        row = self._one(
            "SELECT * FROM projects WHERE id = ? AND owner_id = ?", (project_id, owner_id)
        )
        return None if row is None else self._project(row)

    def project_owner(self, project_id: str) -> str:
        row = self._one("SELECT owner_id FROM projects WHERE id = ?", (project_id,))
        return "" if row is None else row["owner_id"]

    def add_project_token(
        self, project_id: str, name: str, api_key: str, pass_hash: str, autogenerated: bool
    ) -> None:
        self._write(
            "INSERT INTO project_tokens (id, project_id, name, api_key, pass_hash, autogenerated,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new_id(), project_id, name, api_key, pass_hash, int(autogenerated), time.time()),
        )

    # -- models and versions --------------------------------------------------

    @staticmethod
    def _model(row: sqlite3.Row) -> Model:
        return _record(Model, row)

    def create_model(
        self, project_id: str, name: str, model_type: str, description: str, created_by: str
    ) -> Model:
        model = Model(new_id(), project_id, name, model_type, description, created_by, time.time())
        self._write(
            "INSERT INTO models (id, project_id, name, type, description, created_by, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (model.id, project_id, name, model_type, description, created_by, model.created_at),
        )
        return model

    def list_models(self, project_id: str) -> list[Model]:
        rows = self._all(
            "SELECT * FROM models WHERE project_id = ? ORDER BY created_at, id", (project_id,)
        )
        return [self._model(r) for r in rows]

    def owned_models(self, owner_id: str) -> list[Model]:
        rows = self._all(
            "SELECT m.* FROM models m JOIN projects p ON p.id = m.project_id "
            "WHERE p.owner_id = ? ORDER BY m.created_at, m.id",
            (owner_id,),
        )
        return [self._model(r) for r in rows]

    def get_model(self, owner_id: str, model_id: str) -> Optional[Model]:
        row = self._one(
            "SELECT m.* FROM models m JOIN projects p ON p.id = m.project_id "
            "WHERE m.id = ? AND p.owner_id = ?",
            (model_id, owner_id),
        )
        return None if row is None else self._model(row)

    def model_by_id(self, model_id: str) -> Optional[Model]:
        """A model whoever owns it: for the server's own bookkeeping, never for a request."""
        row = self._one("SELECT * FROM models WHERE id = ?", (model_id,))
        return None if row is None else self._model(row)

    def delete_model(self, model_id: str) -> list[str]:
        """Delete a model with its versions, backtests and deployment; return its zip names."""
        with self.transaction():
            names = [
                r["zip_name"]
                for r in self._all("SELECT zip_name FROM versions WHERE model_id = ?", (model_id,))
            ]
            self._conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
        return names

    @staticmethod
    def _version(row: sqlite3.Row) -> Version:
        return _record(Version, row, manifest=_loads(row["manifest"]))

    def add_version(
        self,
        model_id: str,
        *,
        version_id: str,
        description: str,
        python_version: str,
        sha256: str,
        size: int,
        uploaded_by: str,
        zip_name: str,
        model_type: str,
        schedule: Optional[str],
        manifest: dict[str, Any],
    ) -> Version:
        with self.transaction():
            row = self._one(
                "SELECT COALESCE(MAX(number), 0) + 1 AS n FROM versions WHERE model_id = ?",
                (model_id,),
            )
            version = Version(
                version_id, model_id, row["n"], description, time.time(), python_version,
                sha256, size, uploaded_by, zip_name, model_type, schedule, manifest,
            )
            self._conn.execute(
                "INSERT INTO versions (id, model_id, number, description, created_at,"
                " python_version, sha256, size, uploaded_by, zip_name, model_type, schedule,"
                " manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version.id, model_id, version.number, description, version.created_at,
                    python_version, sha256, size, uploaded_by, zip_name, model_type, schedule,
                    _dumps(manifest),
                ),
            )
        return version

    def list_versions(self, model_id: str) -> list[Version]:
        rows = self._all(
            "SELECT * FROM versions WHERE model_id = ? ORDER BY number DESC", (model_id,)
        )
        return [self._version(r) for r in rows]

    def get_version(self, model_id: str, version_id: Optional[str] = None) -> Optional[Version]:
        """A version of the model: the given one, or the latest when ``version_id`` is None."""
        if version_id is None:
            row = self._one(
                "SELECT * FROM versions WHERE model_id = ? ORDER BY number DESC LIMIT 1",
                (model_id,),
            )
        else:
            row = self._one(
                "SELECT * FROM versions WHERE model_id = ? AND id = ?", (model_id, version_id)
            )
        return None if row is None else self._version(row)

    def version_zip_names(self) -> set[str]:
        return {r["zip_name"] for r in self._all("SELECT zip_name FROM versions")}

    # -- backtests ------------------------------------------------------------

    @staticmethod
    def _backtest(row: sqlite3.Row) -> Backtest:
        return _record(Backtest, row, args=_loads(row["args"]), result=_loads(row["result"]), summary=None,
                       parameters=_loads(row["parameters"]))

    def add_backtest(
        self,
        *,
        model_id: str,
        version_id: str,
        project_id: str,
        args: dict[str, Any],
        description: str,
        plan: str,
        parameters: Optional[dict[str, Any]] = None,
        sweep_id: Optional[str] = None,
    ) -> Backtest:
        backtest = Backtest(
            new_id(), model_id, version_id, project_id, "queued", json_safe(args), description,
            plan, time.time(), None, None, None, None, None,
            parameters=json_safe(parameters or {}), sweep_id=sweep_id,
        )
        self._write(
            "INSERT INTO backtests (id, model_id, version_id, project_id, status, args,"
            " description, plan, created_at, parameters, sweep_id) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
            (
                backtest.id, model_id, version_id, project_id, _dumps(args), description, plan,
                backtest.created_at, _dumps(backtest.parameters), sweep_id,
            ),
        )
        return backtest

    def get_backtest(self, owner_id: str, backtest_id: str) -> Optional[Backtest]:
        row = self._one(
            "SELECT b.* FROM backtests b JOIN models m ON m.id = b.model_id "
            "JOIN projects p ON p.id = m.project_id WHERE b.id = ? AND p.owner_id = ?",
            (backtest_id, owner_id),
        )
        return None if row is None else self._backtest(row)

    def list_backtests(self, model_id: str) -> list[Backtest]:
        """A model's backtests, newest first; each carries its result's summary, not the whole result
        (SQLite reads the few fields out of the stored JSON, so a long list stays cheap)."""
        columns = ", ".join(f.name for f in dataclass_fields(Backtest) if f.name not in ("result", "summary"))
        rows = self._all(
            f"SELECT {columns}, json_extract(result, '$.metrics') AS s_metrics,"
            " json_array_length(result, '$.trades') AS s_trades,"
            " json_extract(result, '$.initial_account_value') AS s_initial,"
            " json_extract(result, '$.final_account_value') AS s_final"
            " FROM backtests WHERE model_id = ? ORDER BY created_at DESC, rowid DESC",
            (model_id,),
        )
        return [_record(Backtest, r, args=_loads(r["args"]), result=None, parameters=_loads(r["parameters"]),
                        summary=summary_of(r["s_metrics"], r["s_trades"], r["s_initial"], r["s_final"]))
                for r in rows]

    def unfinished_backtests(self, model_id: str) -> list[str]:
        rows = self._all(
            "SELECT id FROM backtests WHERE model_id = ? AND status IN ('queued', 'running', 'building')",
            (model_id,),
        )
        return [r["id"] for r in rows]

    def count_queued(self) -> int:
        """Backtests waiting in the queue (a sweep's points wait in their sweep, not there)."""
        return self._one("SELECT COUNT(*) AS n FROM backtests WHERE status = 'queued' AND sweep_id IS NULL")["n"]

    def update_backtest(self, backtest_id: str, fields: dict[str, Any]) -> bool:
        """Apply a runner report. A finished backtest is final: later reports are ignored."""
        sets, args = [], []
        for key in _BACKTEST_FIELDS:
            if key in fields:
                value = fields[key]
                sets.append(f"{key} = ?")
                args.append(_dumps(value) if key == "result" and value is not None else value)
        if not sets:
            return False
        with self.transaction():
            changed = self._conn.execute(
                f"UPDATE backtests SET {', '.join(sets)} WHERE id = ?"
                " AND status NOT IN ('completed', 'failed', 'cancelled')",
                (*args, backtest_id),
            ).rowcount > 0
            if changed and isinstance(fields.get("result"), dict):
                self.record_point_metrics(backtest_id, fields["result"].get("metrics"))
        return changed

    def backtest_by_id(self, backtest_id: str) -> Optional[Backtest]:
        """A backtest whoever owns it: for the server's own bookkeeping, never for a request."""
        row = self._one("SELECT * FROM backtests WHERE id = ?", (backtest_id,))
        return None if row is None else self._backtest(row)

    def fail_unfinished_backtests(self, running_on: Sequence[str] = ()) -> int:
        """At startup: backtests a previous process left queued or running cannot finish,
        but those in ``running_on`` (still running where the executor runs them: adopted)."""
        now = time.time()
        keep = list(running_on)
        with self.transaction():
            running = self._conn.execute(
                "UPDATE backtests SET status = 'failed', ended_at = ?, error = ? "
                f"WHERE status IN ('running', 'building') AND id NOT IN ({', '.join('?' * len(keep))})",
                (now, "server restarted while the backtest was running", *keep),
            ).rowcount
            queued = self._conn.execute(
                "UPDATE backtests SET status = 'failed', ended_at = ?, error = ? "
                "WHERE status = 'queued'",
                (now, "server restarted before the backtest could start"),
            ).rowcount
        return running + queued

    # -- deployments ----------------------------------------------------------

    @staticmethod
    def _deployment(row: sqlite3.Row) -> Deployment:
        return _record(Deployment, row)

    def start_deployment(self, model_id: str, version_id: str, plan: str) -> Deployment:
        """Record that the model should now run ``version_id`` (replacing any earlier run)."""
        now = time.time()
        self._write(
            "INSERT INTO deployments (model_id, version_id, plan, desired, state, since, pid,"
            " exit_code, restarts, error, log_tail, updated_at)"
            " VALUES (?, ?, ?, 'running', 'starting', ?, NULL, NULL, 0, NULL, '', ?)"
            " ON CONFLICT (model_id) DO UPDATE SET version_id = excluded.version_id,"
            " plan = excluded.plan, desired = 'running', state = 'starting', since = excluded.since,"
            " pid = NULL, exit_code = NULL, restarts = 0, error = NULL, log_tail = '',"
            " updated_at = excluded.updated_at",
            (model_id, version_id, plan, now, now),
        )
        return self.get_deployment(model_id)  # type: ignore[return-value]

    def get_deployment(self, model_id: str) -> Optional[Deployment]:
        row = self._one("SELECT * FROM deployments WHERE model_id = ?", (model_id,))
        return None if row is None else self._deployment(row)

    def deployments(self) -> list[Deployment]:
        return [self._deployment(r) for r in self._all("SELECT * FROM deployments")]

    def update_deployment(self, model_id: str, fields: dict[str, Any]) -> bool:
        """Apply a runner report (or our own); ``desired`` may be set too. Never creates a row."""
        sets, args = [], []
        for key in (*_LIVE_FIELDS, "desired"):
            if key in fields:
                sets.append(f"{key} = ?")
                value = fields[key]
                args.append("" if key == "log_tail" and value is None else value)
        if not sets:
            return False
        sets.append("updated_at = ?")
        args.append(time.time())
        return self._write(
            f"UPDATE deployments SET {', '.join(sets)} WHERE model_id = ?", (*args, model_id)
        ) > 0
