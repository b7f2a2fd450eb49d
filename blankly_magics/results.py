"""Result objects for backtests and deployments, with text/HTML/chart rendering.

Plain Python (no IPython, no ipywidgets): the magics return these objects, the
panel and scripts use them too. pandas and matplotlib are optional and imported
only when a DataFrame or a chart is asked for. No repr ever holds a token: the
objects keep ids and data, and at most a log-fetching callable that is kept out
of every repr.
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from .charts import account_values_frame, equity_figure, figure_png, points
from .errors import BlanklyError
from .formats import time_text
from .hints import NOTEBOOK, Hints
from .report.reported import Reported, trades_table

TERMINAL_STATES = ("completed", "failed", "cancelled")

# Blankly's platform format names metrics by short keys, each holding
# {"value", "display_name", "type"}; users know the display names (they are
# what `strategy.backtest()` prints), so results are keyed by those.


def normalize_metrics(raw: Any) -> dict[str, Any]:
    """{"cagr": {"display_name": "Compound Annual Growth Rate (%)", "value": 1.2}}
    -> {"Compound Annual Growth Rate (%)": 1.2}; a flat {name: value} is kept."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and "value" in value:
            out[str(value.get("display_name") or key)] = value["value"]
        else:
            out[str(key)] = value
    return out


def format_value(value: Any) -> str:
    """A metric or amount as a short human string."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            return "n/a" if math.isnan(number) else ("inf" if number > 0 else "-inf")
        if abs(number) >= 1000:
            return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"
        if number == int(number):
            return str(int(number))
        return f"{number:.4g}"
    return str(value)


def format_time(value: Any) -> str:
    """A stamp as the tables show it: UTC, to the minute (market data keeps UTC); empty when there is none."""
    return "" if value in (None, "") else time_text(value, seconds=False, utc=True)


def esc(value: Any) -> str:
    """Text made safe for HTML."""
    return html.escape(str(value), quote=True)


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


def _kv_table_html(rows: Sequence[tuple[str, Any]], caption: str = "") -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{esc(k)}</th><td style='text-align:right'>{esc(format_value(v))}</td></tr>"
        for k, v in rows
    )
    cap = f"<caption style='text-align:left'>{esc(caption)}</caption>" if caption else ""
    return f"<table class='blankly-metrics'>{cap}{cells}</table>"


def _kv_text(rows: Sequence[tuple[str, Any]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"  {k.ljust(width)}  {format_value(v)}" for k, v in rows)


class Shown:
    """Shows itself in IPython: ``to_html()`` in notebooks, ``to_text()`` in terminals.

    IPython's pretty printer takes a class's own ``__repr__`` before an inherited
    ``_repr_pretty_``, so subclasses that define ``__repr__`` restate
    ``_repr_pretty_ = Shown._repr_pretty_``."""

    def to_text(self) -> str:
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_text())


def _log_tail_html(text: str) -> str:
    return f"<details open><summary>Log tail</summary><pre>{esc(_tail(text))}</pre></details>"


@dataclass(repr=False)
class BacktestResult(Reported, Shown):
    """One backtest as the server reports it; `.metrics` is keyed by Blankly's
    metric names (Blankly's own numbers, as it prints them), `.account_values` is a
    DataFrame (time, value) and `.trades` a DataFrame (time, symbol, side, size, price,
    order_id, ...) when pandas is importable, else lists of dicts. A completed one has a
    report (`.report`, `.drawdown`, `.benchmark`, `.metrics_table`, `.save(path)`)."""

    backtest_id: str
    status: str
    model_id: Optional[str] = None
    version_id: Optional[str] = None
    project_id: Optional[str] = None
    description: str = ""
    args: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)  # its overrides of the notebook's parameters cell
    error: Optional[str] = None
    exit_code: Optional[int] = None
    created_at: Any = None
    started_at: Any = None
    ended_at: Any = None
    metrics: dict = field(default_factory=dict)
    account_values: Any = field(default_factory=list)
    trades: Any = field(default_factory=list)
    initial_account_value: Optional[float] = None
    final_account_value: Optional[float] = None
    start_time: Any = None
    stop_time: Any = None
    symbols: list = field(default_factory=list)
    quote_asset: Optional[str] = None
    exchange: Optional[str] = None
    prices: dict = field(default_factory=dict)  # the prices the backtest replayed, per symbol (the benchmark's)
    parameters: dict = field(default_factory=dict)
    log_tail: str = ""
    show_chart: bool = field(default=True, compare=False)
    commands: Hints = field(default=NOTEBOOK, compare=False)  # how the hints spell commands
    _fetch_logs: Optional[Callable[[], str]] = field(default=None, compare=False)
    _png: Optional[bytes] = field(default=None, compare=False)
    _fetch_version: Optional[Callable[[], dict]] = field(default=None, compare=False)
    _version: Optional[dict] = field(default=None, compare=False)
    _report: Any = field(default=None, compare=False)

    @classmethod
    def from_api(
        cls, payload: dict, *, log_tail: str = "", fetch_logs: Optional[Callable[[], str]] = None,
        commands: Hints = NOTEBOOK, fetch_version: Optional[Callable[[], dict]] = None,
    ) -> "BacktestResult":
        """From /backtest/status or /backtest/result (whose "result" may be null)."""
        result = payload.get("result") or {}
        return cls(
            backtest_id=str(payload.get("backtestId") or payload.get("id") or ""),
            status=str(payload.get("status") or "unknown"),
            model_id=payload.get("modelId"),
            version_id=payload.get("versionId"),
            project_id=payload.get("projectId"),
            description=payload.get("description") or "",
            args=payload.get("args") or {},
            error=payload.get("error"),
            exit_code=payload.get("exitCode"),
            created_at=payload.get("createdAt"),
            started_at=payload.get("startedAt"),
            ended_at=payload.get("endedAt"),
            metrics=normalize_metrics(result.get("metrics")),
            account_values=account_values_frame(result.get("accountValues") or []),
            trades=trades_table(list(result.get("trades") or [])),
            initial_account_value=result.get("initialAccountValue"),
            final_account_value=result.get("finalAccountValue"),
            start_time=result.get("startTime"),
            stop_time=result.get("stopTime"),
            symbols=list(result.get("symbols") or []),
            quote_asset=result.get("quoteAsset"),
            exchange=result.get("exchange"),
            prices=result.get("prices") or {},
            parameters=payload.get("parameters") or result.get("parameters") or {},
            log_tail=log_tail or "",
            commands=commands,
            _fetch_logs=fetch_logs,
            _fetch_version=fetch_version,
        )

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATES

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def trade_count(self) -> int:
        return len(self.trades)

    def logs(self) -> str:
        """The backtest's whole log, fetched from the server."""
        if self._fetch_logs is None:
            return self.log_tail
        return self._fetch_logs()

    def version_info(self) -> dict:
        """The version this backtest ran ({"number", "description", ...} as /model/versions has it),
        asked of the server once; {} when unknown."""
        if self._version is None:
            try:
                self._version = self._fetch_version() if self._fetch_version is not None else {}
            except BlanklyError:  # the report says less, rather than nothing
                self._version = {}
        return self._version

    def figure(self) -> Any:
        """The equity curve as a matplotlib Figure (Agg canvas): against the benchmark, with buy/sell
        markers and the drawdown beneath, once the backtest completed."""
        if self.has_report:
            return self.report.figure()
        return equity_figure(
            self.account_values, title=f"Backtest {self.backtest_id}: account value", quote=self.quote_asset
        )

    def chart_png(self) -> Optional[bytes]:
        """The equity chart as PNG bytes (cached), or None without data or matplotlib."""
        if self._png is None and len(points(self.account_values)) >= 2:
            try:
                self._png = figure_png(self.figure())
            except ImportError:
                return None
        return self._png

    def headline(self) -> str:
        text = f"Backtest {self.backtest_id} {self.status}"
        if self.ok and self.final_account_value is not None:
            start = format_value(self.initial_account_value)
            text += f": account value {start} -> {format_value(self.final_account_value)}"
            if self.quote_asset:
                text += f" {self.quote_asset}"
        elif self.error:
            text += f": {self.error}"
        return text

    def hints(self) -> list[str]:
        out = [self.commands.result(self.backtest_id)]
        if not self.done:
            out.append(self.commands.follow_backtest(self.backtest_id))
        elif self.commands.python:
            out.append("r = _  then r.metrics_table, r.trades, r.benchmark, r.drawdown, r.save('report.html')")
        return out

    def _period(self) -> str:
        if self.start_time is None and self.stop_time is None:
            return ""
        return f"{format_time(self.start_time)} to {format_time(self.stop_time)}"

    def parameters_line(self) -> str:
        """``Parameters: low=25, high=75`` when the run overrode the parameters cell, else ""."""
        shown = ", ".join(f"{name}={value!r}" for name, value in self.parameters.items())
        return f"Parameters: {shown}" if shown else ""

    def to_text(self) -> str:
        lines = [self.headline()]
        if self.parameters:
            lines.append(self.parameters_line())
        if self.has_report:
            from .report.document import metrics_text, period_text, trades_text

            lines += ["Metrics:", metrics_text(self, self.report), f"Period: {period_text(self)}",
                      trades_text(self.report.trades)]
        elif self.metrics:
            lines.append("Metrics:")
            lines.append(_kv_text(list(self.metrics.items())))
        if self.done and self.ok and not self.has_report:
            period = self._period()
            lines.append(f"Trades: {self.trade_count}" + (f"   Period: {period}" if period else ""))
        if self.status == "failed" and self.log_tail:
            lines.append("Log tail:")
            lines.append(_tail(self.log_tail))
        lines.append("More: " + "   ".join(self.hints()))
        return "\n".join(lines)

    def to_html(self, chart: Optional[bool] = None, hints: bool = True) -> str:
        """The result as HTML; ``hints=False`` leaves out the "More: %blankly ... / r = _" line,
        which only makes sense below a notebook cell (the panel has buttons instead)."""
        chart = self.show_chart if chart is None else chart
        colour = {"completed": "#1a7f37", "failed": "#cf222e", "cancelled": "#9a6700"}.get(self.status, "#57606a")
        parts = [f"<div class='blankly-backtest'><p><b style='color:{colour}'>{esc(self.headline())}</b></p>"]
        if self.parameters:
            parts.append(f"<p>{esc(self.parameters_line())}</p>")
        if self.has_report:
            from .report.document import cell_html

            parts.append(cell_html(self, self.report, chart))
        elif self.metrics:
            parts.append(_kv_table_html(list(self.metrics.items()), caption="Metrics"))
        if self.done and self.ok and not self.has_report:
            period = self._period()
            parts.append(
                f"<p>Trades: <b>{self.trade_count}</b>" + (f" &middot; Period: {esc(period)}" if period else "") + "</p>"
            )
        if chart and self.ok and not self.has_report:
            png = self.chart_png()
            if png:
                data = base64.b64encode(png).decode("ascii")
                parts.append(f"<img alt='equity curve' src='data:image/png;base64,{data}'/>")
        if self.status == "failed" and self.log_tail:
            parts.append(_log_tail_html(self.log_tail))
        if hints:
            parts.append("<p style='color:#57606a'>More: " + " &middot; ".join(f"<code>{esc(h)}</code>" for h in self.hints()) + "</p>")
        return "".join(parts) + "</div>"

    _repr_pretty_ = Shown._repr_pretty_

    def __repr__(self) -> str:
        return (
            f"BacktestResult(backtest_id={self.backtest_id!r}, status={self.status!r}, model_id={self.model_id!r}, "
            f"version_id={self.version_id!r}, metrics={len(self.metrics)}, trades={self.trade_count})"
        )


@dataclass(repr=False)
class DeployResult(Shown):
    """A live deployment: which model and version, and its state on the server."""

    model_id: str
    version_id: Optional[str] = None
    project_id: Optional[str] = None
    name: Optional[str] = None
    status: str = "unknown"
    since: Any = None
    restarts: int = 0
    exit_code: Optional[int] = None
    error: Optional[str] = None
    log_tail: str = ""
    orders: Optional[list] = None  # its last orders, when they were asked for (``status``)
    commands: Hints = field(default=NOTEBOOK, compare=False)
    _fetch_logs: Optional[Callable[[], str]] = field(default=None, compare=False)

    @classmethod
    def from_api(
        cls,
        deploy: dict,
        deployment: Optional[dict] = None,
        *,
        name: Optional[str] = None,
        fetch_logs: Optional[Callable[[], str]] = None,
        commands: Hints = NOTEBOOK,
    ) -> "DeployResult":
        """From a /model/deploy answer and/or a /model/deployment answer."""
        state = deployment or {}
        return cls(
            model_id=str(deploy.get("modelId") or state.get("modelId") or ""),
            version_id=deploy.get("versionId") or state.get("versionId"),
            project_id=deploy.get("projectId") or state.get("projectId"),
            name=name or deploy.get("name") or state.get("name"),
            status=str(state.get("state") or deploy.get("state") or deploy.get("status") or "unknown"),
            since=state.get("since"),
            restarts=int(state.get("restarts") or 0),
            exit_code=state.get("exitCode"),
            error=state.get("error"),
            log_tail=state.get("logTail") or "",
            commands=commands,
            _fetch_logs=fetch_logs,
        )

    def logs(self) -> str:
        if self._fetch_logs is None:
            return self.log_tail
        return self._fetch_logs()

    def rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [("model", self.model_id)]
        if self.name:
            rows.append(("name", self.name))
        rows += [("version", self.version_id or "n/a"), ("status", self.status)]
        if self.since is not None:
            rows.append(("since", format_time(self.since)))
        if self.restarts:
            rows.append(("restarts", self.restarts))
        if self.exit_code is not None:
            rows.append(("exit code", self.exit_code))
        if self.error:
            rows.append(("error", self.error))
        return rows

    def hints(self) -> list[str]:
        """What makes sense next: watch and stop a model that runs; read a crashed one's log."""
        if self.status in ("stopped", "none"):
            return []
        if self.status == "crashed":
            return [self.commands.command("logs", "--model", self.model_id)]
        return [self.commands.follow_model(self.model_id), self.commands.stop(self.model_id)]

    def _hint_words(self) -> list[tuple[str, str]]:
        return list(zip(("Watch", "Stop") if self.status != "crashed" else ("Log",), self.hints()))

    def headline(self) -> str:
        named = f"{self.name} ({self.model_id})" if self.name else self.model_id
        return f"Model {named} version {self.version_id or 'n/a'}: {self.status}"

    def to_text(self) -> str:
        lines = [self.headline(), _kv_text(self.rows())]
        if self.status == "crashed" and self.log_tail:
            lines += ["Log tail:", _tail(self.log_tail)]
        if self.hints():
            lines.append("   ".join(f"{word}: {hint}" for word, hint in self._hint_words()))
        if self.orders is not None:
            from .orders import orders_text

            lines.append(orders_text(self.orders, "Last orders"))
        return "\n".join(lines)

    def to_html(self, hints: bool = True) -> str:
        """The deployment as HTML; ``hints=False`` leaves out the %blankly logs/stop commands."""
        named = f"{self.name} ({self.model_id})" if self.name else self.model_id
        parts = [
            f"<div class='blankly-deploy'><p><b>Model {esc(named)}</b> version "
            f"<code>{esc(self.version_id or 'n/a')}</code>: <b>{esc(self.status)}</b></p>",
            "<table>"
            + "".join(
                f"<tr><th style='text-align:left'>{esc(k)}</th><td style='text-align:left'>{esc(v)}</td></tr>"
                for k, v in self.rows()
            )
            + "</table>",
        ]
        if self.status == "crashed" and self.log_tail:
            parts.append(_log_tail_html(self.log_tail))
        if hints and self.hints():
            parts.append("<p style='color:#57606a'>" + " &middot; ".join(
                f"{word}: <code>{esc(hint)}</code>" for word, hint in self._hint_words()) + "</p>")
        if self.orders is not None:
            from .orders import orders_html

            parts.append(orders_html(self.orders, "Last orders"))
        return "".join(parts) + "</div>"

    _repr_pretty_ = Shown._repr_pretty_

    def __repr__(self) -> str:
        return f"DeployResult(model_id={self.model_id!r}, version_id={self.version_id!r}, status={self.status!r})"
