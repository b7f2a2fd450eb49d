"""The store's sweep queries: a sweep, its points (each a backtest row of its own) and their metrics.

A sweep's row says what was asked (grid, objective, constraints, backtest arguments);
each point is a backtest row (``sweep_id`` set, ``parameters`` the point's values) and a
``sweep_points`` row giving its place in the grid and, once it completed, its metrics, so
a sweep's table is read without its points' whole results.
"""
from __future__ import annotations

import sqlite3
import time
from typing import Any, Optional

from ..sweepspec import grid_points
from .database import Database
from .records import Backtest, Sweep, json_safe
from .rows import dumps, loads, record

_SWEEP_FIELDS = ("status", "started_at", "ended_at", "error")
_FINAL = "('completed', 'failed', 'cancelled')"


def _sweep(row: sqlite3.Row) -> Sweep:
    return record(Sweep, row, grid=loads(row["grid"]), parameters=loads(row["parameters"]),
                  objective=loads(row["objective"]), constraints=loads(row["constraints"]), args=loads(row["args"]))


class SweepQueries(Database):
    """Sweeps, read through their owner as every object is (another user's id looks missing)."""

    def add_sweep(
        self, *, model_id: str, version_id: str, project_id: str, grid: dict[str, list[Any]],
        parameters: dict[str, Any], objective: dict[str, str], constraints: list[str], args: dict[str, Any],
        description: str, plan: str,
    ) -> tuple[Sweep, list[Backtest]]:
        """The sweep and one queued backtest per point, in grid order, in one transaction."""
        from .store import new_id

        points = grid_points(grid)
        sweep = Sweep(new_id(), model_id, version_id, project_id, "queued", json_safe(grid), json_safe(parameters),
                      dict(objective), list(constraints), json_safe(args), description, plan, len(points),
                      time.time(), None, None, None)
        backtests: list[Backtest] = []
        with self.transaction():
            self._conn.execute(
                "INSERT INTO sweeps (id, model_id, version_id, project_id, status, grid, parameters, objective,"
                " constraints, args, description, plan, points, created_at)"
                " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sweep.id, model_id, version_id, project_id, dumps(grid), dumps(parameters), dumps(objective),
                 dumps(constraints), dumps(args), description, plan, len(points), sweep.created_at),
            )
            for index, point in enumerate(points):
                backtest = self.add_backtest(  # type: ignore[attr-defined]
                    model_id=model_id, version_id=version_id, project_id=project_id, args=args,
                    description=description or f"point {index + 1} of sweep {sweep.id}", plan=plan,
                    parameters={**parameters, **point}, sweep_id=sweep.id,
                )
                self._conn.execute("INSERT INTO sweep_points (sweep_id, point, backtest_id) VALUES (?, ?, ?)",
                                   (sweep.id, index, backtest.id))
                backtests.append(backtest)
        return sweep, backtests

    def get_sweep(self, owner_id: str, sweep_id: str) -> Optional[Sweep]:
        row = self._one(
            "SELECT s.* FROM sweeps s JOIN models m ON m.id = s.model_id "
            "JOIN projects p ON p.id = m.project_id WHERE s.id = ? AND p.owner_id = ?",
            (sweep_id, owner_id),
        )
        return None if row is None else _sweep(row)

    def list_sweeps(self, owner_id: str, model_id: Optional[str] = None) -> list[Sweep]:
        """The user's sweeps (of one model when given), newest first."""
        rows = self._all(
            "SELECT s.* FROM sweeps s JOIN models m ON m.id = s.model_id JOIN projects p ON p.id = m.project_id "
            "WHERE p.owner_id = ? AND (? IS NULL OR s.model_id = ?) ORDER BY s.created_at DESC, s.rowid DESC",
            (owner_id, model_id, model_id),
        )
        return [_sweep(r) for r in rows]

    def sweep_points(self, sweep_id: str, metrics: bool = True) -> list[dict[str, Any]]:
        """Each point in grid order: {"point", "backtestId", "status", "parameters", "error"[, "metrics"]}."""
        rows = self._all(
            "SELECT sp.point, sp.metrics, b.id, b.status, b.parameters, b.error FROM sweep_points sp "
            "JOIN backtests b ON b.id = sp.backtest_id WHERE sp.sweep_id = ? ORDER BY sp.point",
            (sweep_id,),
        )
        out = []
        for r in rows:
            point = {"point": r["point"], "backtestId": r["id"], "status": r["status"],
                     "parameters": loads(r["parameters"]), "error": r["error"]}
            if metrics:
                point["metrics"] = loads(r["metrics"])
            out.append(point)
        return out

    def sweep_counts(self, sweep_ids: list[str]) -> dict[str, dict[str, int]]:
        """Each sweep's points by status: {sweep id: {"queued": n, "running": n, ...}}."""
        out: dict[str, dict[str, int]] = {sid: {} for sid in sweep_ids}
        if not sweep_ids:
            return out
        marks = ", ".join("?" for _ in sweep_ids)
        for r in self._all(
            "SELECT sp.sweep_id, b.status, COUNT(*) AS n FROM sweep_points sp JOIN backtests b"
            f" ON b.id = sp.backtest_id WHERE sp.sweep_id IN ({marks}) GROUP BY sp.sweep_id, b.status",
            tuple(sweep_ids),
        ):
            out[r["sweep_id"]][r["status"]] = r["n"]
        return out

    def record_point_metrics(self, backtest_id: str, metrics: Any) -> None:
        """A completed point's metrics, kept beside its place in the grid (no-op for other backtests)."""
        self._write("UPDATE sweep_points SET metrics = ? WHERE backtest_id = ?",
                    (dumps(metrics if isinstance(metrics, dict) else {}), backtest_id))

    def update_sweep(self, sweep_id: str, fields: dict[str, Any]) -> bool:
        """Apply a runner report. A finished sweep is final: later reports are ignored."""
        keys = [key for key in _SWEEP_FIELDS if key in fields]
        if not keys:
            return False
        return self._write(
            f"UPDATE sweeps SET {', '.join(f'{key} = ?' for key in keys)} WHERE id = ? AND status NOT IN {_FINAL}",
            (*(fields[key] for key in keys), sweep_id),
        ) > 0

    def unfinished_sweeps(self, model_id: Optional[str] = None) -> list[str]:
        rows = self._all(
            "SELECT id FROM sweeps WHERE status IN ('queued', 'running') AND (? IS NULL OR model_id = ?)",
            (model_id, model_id),
        )
        return [r["id"] for r in rows]

    def fail_unfinished_sweeps(self) -> int:
        """At startup: sweeps a previous process left queued or running cannot finish (their points
        are failed with the other unfinished backtests)."""
        return self._write(
            "UPDATE sweeps SET status = 'failed', ended_at = ?, error = ? WHERE status IN ('queued', 'running')",
            (time.time(), "the server restarted before the sweep finished"),
        )
