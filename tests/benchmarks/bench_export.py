"""Notebook -> model zip: our whole pipeline vs nbconvert's PythonExporter + zipfile.

Ours: ``build_bundle(path)`` (read, select cells, strip IPython syntax, compile and
check names, infer requirements, find data files, write blankly.json/settings) and
``write_zip``. Baseline: ``PythonExporter().from_filename(path)`` and a zip holding
that one script; nbconvert neither checks nor selects anything. Both run in this
process, interleaved, after one warm-up each (imports, nbconvert's templates), on
the same notebook file: a synthetic research notebook and the quickstart.
"""
from __future__ import annotations

import cProfile
import pstats
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

from .harness import QUICKSTART, Row, interleaved, median, spread
from .synthetic import ENTRY, write_synthetic_notebook

NAME = "export"


def ours(notebook: Path, out: Path, entry: str | None) -> Callable[[], float]:
    from blankly_magics.export import build_bundle

    def once() -> float:
        started = time.perf_counter()
        build_bundle(notebook, entry=entry).write_zip(out)
        return time.perf_counter() - started

    return once


def nbconvert(notebook: Path, out: Path) -> Callable[[], float]:
    from nbconvert import PythonExporter

    def once() -> float:
        started = time.perf_counter()
        script, _ = PythonExporter().from_filename(str(notebook))
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("model/bot.py", script)
        return time.perf_counter() - started

    return once


def profile_top(fn: Callable[[], float], top: int = 6) -> list[str]:
    """cProfile one run of ours: our functions by cumulative time, then the hottest own times."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = stats.stats.items()  # type: ignore[attr-defined]

    def label(path: str, line: int, func: str) -> str:
        return f"{func} ({Path(path).name}:{line})" if path != "~" else func

    ours_ = [(cum, label(*key), calls) for key, (_, calls, _, cum, _) in rows if "blankly_magics" in key[0]]
    lines = ["our functions, cumulative share:"]
    for cum, name, calls in sorted(ours_, reverse=True)[:top]:
        lines.append(f"  {name}: {cum / total:.0%} ({calls} calls)")
    hottest = sorted(((own, label(*key)) for key, (_, _, own, _, _) in rows), reverse=True)[:4]
    lines.append("hottest own time: " + "; ".join(f"{name} {own / total:.0%}" for own, name in hottest))
    return lines


def _row(label: str, notebook: Path, tmp: Path, entry: str | None, repeats: int) -> Row:
    runs = {"ours": ours(notebook, tmp / "ours.zip", entry), "nbconvert": nbconvert(notebook, tmp / "nbconvert.zip")}
    cold = {name: fn() for name, fn in runs.items()}  # first calls: imports and template loading
    samples = interleaved(runs, repeats)
    mine, theirs = median(samples["ours"]), median(samples["nbconvert"])
    details = [
        f"seconds: ours {spread(samples['ours'], 3)}; nbconvert {spread(samples['nbconvert'], 3)}",
        f"first call (imports included): ours {cold['ours']:.3f} s, nbconvert {cold['nbconvert']:.3f} s",
        f"speed-up: {theirs / mine:.1f}x",
        "where ours spends its time (cProfile of one run):",
    ]
    details += ["  " + line for line in profile_top(runs["ours"])]
    return Row(f"export: {label}", mine * 1000, theirs * 1000, "ms", details)


def run(quick: bool = False) -> list[Row]:
    cells, repeats = (100, 2) if quick else (1000, 7)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as name:
        tmp = Path(name)
        synthetic = write_synthetic_notebook(tmp / "research", cells)
        return [
            _row(f"{cells}-code-cell notebook", synthetic, tmp, ENTRY, repeats),
            _row("quickstart.ipynb", QUICKSTART, tmp, None, 3 if quick else 15),
        ]
