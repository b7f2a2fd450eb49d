"""Small layout helpers every panel section uses."""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

LABEL_WIDTH = "104px"


def plan_label(name: str, spec: dict[str, Any]) -> str:
    """'nano  -  0.5 CPU, 512 MB RAM' from a plan's cpu (millicores) and ram (MB)."""
    parts = []
    cpu = spec.get("cpu")
    if isinstance(cpu, (int, float)):
        parts.append(f"{cpu / 1000:g} CPU")
    ram = spec.get("ram")
    if isinstance(ram, (int, float)):
        parts.append(f"{round(ram / 1024, 1):g} GB RAM" if ram >= 1024 else f"{ram:g} MB RAM")
    return f"{name} \u2013 {', '.join(parts)}" if parts else name


def labelled(widget: W.Widget, label: str) -> W.Widget:
    widget.description = label
    widget.style.description_width = LABEL_WIDTH
    widget.layout.width = "auto"
    widget.layout.min_width = "0"
    return widget


def grid(*children: W.Widget, columns: int = 2) -> W.GridBox:
    # minmax(0, 1fr): columns may shrink below their content, so nothing overflows.
    return W.GridBox(
        list(children),
        layout=W.Layout(grid_template_columns=f"repeat({columns}, minmax(0, 1fr))", grid_gap="2px 16px",
                        width="100%"),
    )


def row(*children: W.Widget) -> W.HBox:
    return W.HBox(list(children), layout=W.Layout(justify_content="space-between", align_items="center"))


def titled(title: str, *children: W.Widget) -> W.VBox:
    head = W.HTML(f"<div style='font-weight:600;border-bottom:1px solid var(--jp-border-color2,#ddd);"
                  f"margin:6px 0 2px 0'>{html.escape(title)}</div>")
    return W.VBox([head, *children], layout=W.Layout(width="100%"))


def show(widget: W.Widget, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


def shown(widget: W.Widget) -> bool:
    return widget.layout.display != "none"


def fit(fragment: str) -> str:
    """Keep result HTML (its chart is an 800 px PNG) inside the panel's width."""
    return ("<div class='blankly-panel-result' style='max-width:100%;overflow-x:auto'>"
            "<style>.blankly-panel-result img{max-width:100%;height:auto}</style>" + fragment + "</div>")
