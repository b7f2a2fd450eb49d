"""The report's charts, drawn with matplotlib's Agg canvas (never pyplot, never a GUI backend).

``report_figure``: the equity curve against its buy-and-hold benchmark with buy/sell markers, the
drawdown beneath. ``overlay_figure``: several equity curves on one axis. Both lay themselves out
with fixed margins: ``tight_layout`` measures every label first and would double the render time.
"""
from __future__ import annotations

import io
from typing import Any, Mapping, Optional

import pandas as pd

STRATEGY = "#1f6feb"
BENCHMARK = "#8c959f"
BUY, SELL = "#1a7f37", "#cf222e"
DRAWDOWN = "#cf222e"
PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bf3989", "#57606a")
SIZE = (8.0, 4.6)


def _canvas(size: tuple[float, float] = SIZE) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _times(index: pd.DatetimeIndex) -> Any:
    """UTC times as numpy datetime64, which matplotlib plots without pandas' converters."""
    return index.tz_convert(None).to_numpy() if index.tz is not None else index.to_numpy()


def _dates(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _markers(ax: Any, values: pd.Series, fills: pd.DataFrame) -> None:
    """A triangle on the equity curve at each fill: up for buys, down for sells (scatter, not lines)."""
    if fills.empty or values.empty:
        return
    when = pd.DatetimeIndex(fills["time"])
    at = values.reindex(values.index.union(when)).ffill().bfill().reindex(when).to_numpy()
    side = fills["side"].astype(str).str.lower().to_numpy()
    for wanted, marker, colour, label in (("buy", "^", BUY, "buy"), ("sell", "v", SELL, "sell")):
        pick = side == wanted
        if pick.any():
            ax.scatter(_times(when[pick]), at[pick], marker=marker, s=28, color=colour, zorder=3, label=label,
                       linewidths=0)


def report_figure(values: pd.Series, *, benchmark: Optional[pd.Series] = None, drawdown: Optional[pd.Series] = None,
                  fills: Optional[pd.DataFrame] = None, title: str = "Account value", quote: Optional[str] = None,
                  benchmark_label: str = "buy and hold") -> Any:
    """The equity curve (and benchmark, and fills) above, the drawdown in percent below."""
    fig = _canvas()
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    fig.subplots_adjust(left=0.1, right=0.98, top=0.93, bottom=0.08, hspace=0.06)
    top.plot(_times(values.index), values.to_numpy(), linewidth=1.4, color=STRATEGY, label="strategy")
    if benchmark is not None and len(benchmark):
        top.plot(_times(benchmark.index), benchmark.to_numpy(), linewidth=1.1, color=BENCHMARK,
                 linestyle="--", label=benchmark_label)
    if fills is not None:
        _markers(top, values, fills)
    top.set_title(title, fontsize=11, y=1.0, pad=4)  # a fixed place: placing it measures every tick label
    top.set_ylabel(f"value ({quote})" if quote else "value")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left", fontsize=8, frameon=False, ncol=4)
    if drawdown is not None and len(drawdown):
        bottom.fill_between(_times(drawdown.index), drawdown.to_numpy() * 100.0, 0.0, color=DRAWDOWN, alpha=0.35,
                            linewidth=0)
    bottom.set_ylabel("drawdown (%)")
    bottom.grid(True, alpha=0.3)
    _dates(bottom)
    return fig


def overlay_figure(curves: Mapping[str, pd.Series], *, title: str = "Account value",
                   quote: Optional[str] = None) -> Any:
    """Several equity curves on one axis, one colour each, labelled."""
    fig = _canvas((8.0, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.1)
    for n, (label, values) in enumerate(curves.items()):
        ax.plot(_times(values.index), values.to_numpy(), linewidth=1.3, color=PALETTE[n % len(PALETTE)], label=label)
    ax.set_title(title, fontsize=11, y=1.0, pad=4)
    ax.set_ylabel(f"value ({quote})" if quote else "value")
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    _dates(ax)
    return fig


def png(fig: Any, dpi: Optional[float] = None) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
