"""A sweep's result: one row per point, the best point under its objective and constraints, a heatmap.

Plain Python like ``results``: pandas (``.table``) and matplotlib (``.heatmap()``, the
heatmap in the HTML) are imported only when asked for; without pandas ``.table`` is the
list of row dicts. The best point is chosen by ``sweepspec.best_point``, the rule the
server applies too.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import BlanklyError
from .hints import NOTEBOOK, Hints
from .results import TERMINAL_STATES, BacktestResult, Shown, esc, format_value
from .sweepspec import METRICS, Objective, best_point, grid_points, parse_constraints

TEXT_ROWS = 20  # rows the text form shows (the table holds them all)
HTML_ROWS = 200  # rows the HTML form shows, scrollable
COLOURS = {"completed": "#1a7f37", "failed": "#cf222e", "cancelled": "#9a6700"}


@dataclass(repr=False)
class SweepResult(Shown):
    """A sweep as the server reports it. ``.table``: a row per point (a column per parameter, per
    metric, ``status``, ``backtest_id``); ``.best``: the best point's parameters and metrics (None,
    with ``.best_reason``, when no point qualifies); ``.backtests``: the points' backtest ids;
    ``.result(i)``: point ``i``'s whole backtest result."""

    sweep_id: str
    status: str
    model_id: Optional[str] = None
    version_id: Optional[str] = None
    grid: dict = field(default_factory=dict)
    objective: Objective = field(default_factory=Objective)
    constraints: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # {"point", "backtestId", "status", "parameters", "metrics", "error"}
    metric_names: list = field(default_factory=lambda: list(METRICS))
    error: Optional[str] = None
    show_chart: bool = field(default=True, compare=False)  # the heatmap in the HTML (two parameters)
    commands: Hints = field(default=NOTEBOOK, compare=False)
    _fetch_result: Optional[Callable[[str], BacktestResult]] = field(default=None, compare=False)
    _png: Optional[bytes] = field(default=None, compare=False)

    @classmethod
    def from_api(cls, payload: dict, *, fetch_result: Optional[Callable[[str], BacktestResult]] = None,
                 commands: Hints = NOTEBOOK) -> "SweepResult":
        """From /sweep/table, or from /sweep/status (each point's state, no metrics yet)."""
        grid = payload.get("grid") or {}
        rows = payload.get("rows")
        if rows is None:  # a status answer: the points are in grid order
            rows = [{"point": i, "backtestId": None, "status": state, "parameters": point, "metrics": None}
                    for i, (state, point) in enumerate(zip(payload.get("states") or [], grid_points(grid)))]
        return cls(
            sweep_id=str(payload.get("sweepId") or ""), status=str(payload.get("status") or "unknown"),
            model_id=payload.get("modelId"), version_id=payload.get("versionId"), grid=grid,
            objective=Objective.from_dict(payload.get("objective")), constraints=list(payload.get("constraints") or []),
            rows=list(rows), metric_names=list(payload.get("metricNames") or METRICS), error=payload.get("error"),
            commands=commands, _fetch_result=fetch_result,
        )

    # -- what a user reads off it ---------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATES

    @property
    def parameter_names(self) -> list[str]:
        return list(self.grid)

    def _best(self) -> tuple[Optional[int], Optional[str]]:
        return best_point(self.rows, self.objective, parse_constraints(self.constraints))

    @property
    def best(self) -> Optional[dict]:
        """The best point's parameters and metrics (the first in grid order on a tie), or None."""
        index = self._best()[0]
        return None if index is None else self._flat(self.rows[index], with_ids=False)

    @property
    def best_reason(self) -> Optional[str]:
        """Why ``best`` is None (None when there is a best point)."""
        return self._best()[1]

    @property
    def backtests(self) -> list[str]:
        return [row.get("backtestId") for row in self.rows]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.get("status")] = out.get(row.get("status"), 0) + 1
        return out

    def _flat(self, row: dict, with_ids: bool = True) -> dict:
        values = row.get("parameters") or {}
        metrics = row.get("metrics") or {}
        flat = {name: values.get(name) for name in self.parameter_names}
        flat.update((name, metrics.get(name)) for name in self.metric_names)
        if with_ids:
            flat.update(status=row.get("status"), backtest_id=row.get("backtestId"))
        return flat

    @property
    def table(self) -> Any:
        """A pandas DataFrame, one row per point in grid order (the list of row dicts without pandas)."""
        flat = [self._flat(row) for row in self.rows]
        try:
            import pandas as pd
        except ImportError:
            return flat
        columns = [*self.parameter_names, *self.metric_names, "status", "backtest_id"]
        return pd.DataFrame(flat, columns=columns)

    def result(self, i: int) -> BacktestResult:
        """Point ``i``'s whole backtest result (metrics, account values, trades, logs), fetched now."""
        row = self.rows[i]
        if self._fetch_result is None or not row.get("backtestId"):
            raise BlanklyError(f"point {i} has no backtest to fetch here; see {self.commands.sweep(self.sweep_id)}")
        return self._fetch_result(str(row["backtestId"]))

    # -- ranking and drawing --------------------------------------------------------------

    def ranked(self) -> list[int]:
        """Row indexes by the objective, best first: those meeting the constraints, then the other
        completed ones, then the rest; ties in grid order."""
        constraints = parse_constraints(self.constraints)
        sign = -1.0 if self.objective.goal == "maximize" else 1.0

        def key(i: int) -> tuple:
            row = self.rows[i]
            metrics = row.get("metrics") or {}
            value = _number(metrics.get(self.objective.metric))
            meets = row.get("status") == "completed" and all(c.holds(metrics) for c in constraints)
            group = 0 if meets and value is not None else 1 if row.get("status") == "completed" else 2
            return group, sign * value if value is not None else 0.0, i

        return sorted(range(len(self.rows)), key=key)

    def heatmap(self) -> Any:
        """The objective over a two-parameter grid, as a matplotlib Figure (Agg canvas)."""
        if len(self.grid) != 2:
            raise BlanklyError(f"a heatmap shows a sweep over two parameters; this one varies {len(self.grid)}")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        (first, ys), (second, xs) = self.grid.items()
        values = [[math.nan] * len(xs) for _ in ys]
        for i, row in enumerate(self.rows):
            value = _number((row.get("metrics") or {}).get(self.objective.metric))
            if value is not None and row.get("status") == "completed":
                values[i // len(xs)][i % len(xs)] = value
        # Fixed margins, not tight_layout(): laying the figure out twice costs more than drawing it.
        width, height = min(2.6 + 0.6 * len(xs), 10), min(1.6 + 0.4 * len(ys), 8)
        fig = Figure(figsize=(width, height), dpi=90)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.9 / width, right=1 - 1.3 / width, bottom=0.6 / height, top=1 - 0.35 / height)
        ax = fig.add_subplot(1, 1, 1)
        image = ax.imshow(values, cmap="viridis" if self.objective.goal == "maximize" else "viridis_r",
                          aspect="auto", origin="lower")
        ax.set_xticks(range(len(xs)), [format_value(x) for x in xs])
        ax.set_yticks(range(len(ys)), [format_value(y) for y in ys])
        ax.set_xlabel(second)
        ax.set_ylabel(first)
        if len(xs) * len(ys) <= 400:
            low, high = image.norm.vmin, image.norm.vmax
            for r, line in enumerate(values):
                for c, value in enumerate(line):
                    if not math.isnan(value):
                        share = (value - low) / (high - low) if high > low else 0.5
                        light = share > 0.6 if self.objective.goal == "maximize" else share < 0.4  # a bright cell
                        ax.text(c, r, f"{value:.3g}", ha="center", va="center", fontsize=7,
                                color="black" if light else "white")
        best = self._best()[0]
        if best is not None:
            from matplotlib.patches import Rectangle

            ax.add_patch(Rectangle((best % len(xs) - 0.5, best // len(xs) - 0.5), 1, 1, fill=False,
                                   edgecolor="#cf222e", linewidth=2.5))
        fig.colorbar(image, ax=ax, label=f"{self.objective.metric} ({self.objective.goal})", fraction=0.08, pad=0.03)
        ax.set_title(f"Sweep {self.sweep_id[:12]}: {self.objective.metric}", fontsize=10)
        return fig

    def heatmap_png(self) -> Optional[bytes]:
        """The heatmap as PNG bytes (cached once the sweep is done), or None (not two parameters,
        no value yet, or no matplotlib)."""
        if self._png is not None:
            return self._png
        if len(self.grid) != 2 or not any(row.get("metrics") for row in self.rows):
            return None
        try:
            from .charts import figure_png

            png = figure_png(self.heatmap())
        except ImportError:
            return None
        if self.done:
            self._png = png
        return png

    # -- rendering ------------------------------------------------------------------------

    def headline(self) -> str:
        counts = self.counts()
        parts = [f"{counts[state]} {state}" for state in ("completed", "failed", "cancelled") if counts.get(state)]
        waiting = len(self.rows) - sum(counts.get(state, 0) for state in TERMINAL_STATES)
        if waiting:
            parts.append(f"{waiting} not finished")
        text = f"Sweep {self.sweep_id} {self.status}: {len(self.rows)} points ({', '.join(parts) or 'none'})"
        return text + (f": {self.error}" if self.error and self.status == "failed" else "")

    def best_text(self) -> str:
        best = self.best
        if best is None:
            return f"Best: none ({self.best_reason})"
        shown = ", ".join(f"{name}={format_value(best[name])}" for name in self.parameter_names)
        return f"Best: {shown} -> {self.objective.metric} {format_value(best[self.objective.metric])}"

    def ranking_text(self) -> str:
        """What the sweep ranks by, as one line."""
        text = f"Objective: {self.objective.text}"
        return text + (f"; constraints: {'; '.join(self.constraints)}" if self.constraints else "")

    def hints(self) -> list[str]:
        out = [self.commands.sweep(self.sweep_id)]
        if not self.done:
            out.append(self.commands.cancel(self.sweep_id))
        elif self.commands.python:
            out.append("r = _  then r.table, r.best, r.result(i), r.heatmap()")
        return out

    def _columns(self) -> list[str]:
        """The columns the rendered table shows: the parameters, the objective and constrained metrics first."""
        ranking = [self.objective.metric] + [c.metric for c in parse_constraints(self.constraints)]
        shown = list(dict.fromkeys(ranking + list(self.metric_names)))
        return [*self.parameter_names, *shown, "status"]

    def to_text(self) -> str:
        columns = self._columns()[: len(self.parameter_names) + 3] + ["status"]
        order = self.ranked()
        table = [[str(i)] + [_cell(self._flat(self.rows[i]).get(c)) for c in columns] for i in order[:TEXT_ROWS]]
        headers = ["#"] + columns
        widths = [max(len(h), *(len(r[k]) for r in table)) if table else len(h) for k, h in enumerate(headers)]
        lines = [self.headline(), self.ranking_text(), self.best_text(),
                 "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
        if len(order) > TEXT_ROWS:
            lines.append(f"... {len(order) - TEXT_ROWS} more rows (r.table has every point)")
        lines.append("More: " + "   ".join(self.hints()))
        return "\n".join(lines)

    def to_html(self, chart: Optional[bool] = None, hints: bool = True) -> str:
        """The table sorted by the objective, best first, and for two parameters the heatmap."""
        chart = self.show_chart if chart is None else chart
        colour = COLOURS.get(self.status, "#57606a")
        columns = self._columns()
        head = "".join(f"<th style='text-align:right'>{esc(c)}</th>" for c in ["#"] + columns)
        best = self._best()[0]
        body = []
        for i in self.ranked()[:HTML_ROWS]:
            flat = self._flat(self.rows[i])
            style = " style='font-weight:600;background:rgba(26,127,55,.08)'" if i == best else ""
            cells = "".join(f"<td style='text-align:right'>{esc(_cell(flat.get(c)))}</td>" for c in columns)
            body.append(f"<tr{style}><td style='text-align:right'>{i}</td>{cells}</tr>")
        more = len(self.rows) - HTML_ROWS
        parts = [
            f"<div class='blankly-sweep'><p><b style='color:{colour}'>{esc(self.headline())}</b></p>",
            f"<p>{esc(self.ranking_text())}<br><b>{esc(self.best_text())}</b></p>",
            "<div style='max-height:420px;overflow:auto'><table class='blankly-sweep-table'>"
            f"<tr>{head}</tr>{''.join(body)}</table></div>",
        ]
        if more > 0:
            parts.append(f"<p>{more} more rows: r.table has every point</p>")
        png = self.heatmap_png() if chart else None
        if png:
            parts.append(f"<img alt='heatmap of {esc(self.objective.metric)}' "
                         f"src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'/>")
        if hints:
            parts.append("<p style='color:#57606a'>More: "
                         + " &middot; ".join(f"<code>{esc(h)}</code>" for h in self.hints()) + "</p>")
        return "".join(parts) + "</div>"

    _repr_pretty_ = Shown._repr_pretty_

    def __repr__(self) -> str:
        return f"SweepResult(sweep_id={self.sweep_id!r}, status={self.status!r}, points={len(self.rows)})"


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _cell(value: Any) -> str:
    return "" if value is None else format_value(value)
