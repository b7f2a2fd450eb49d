"""The benchmarks keep working: ``python -m tests.benchmarks.run --quick`` runs every one,
prints the table with a ratio on every row and writes the docs' page from it.

Only that they run is checked, never how fast anything is: speed is not a test
assertion (the figures of a quick run on a shared machine mean little).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The start of each row's name, in table order: one row per figure the benchmarks page reports.
ROWS = (
    "load: %load_ext added",
    "export: 100-code-cell notebook",
    "export: quickstart.ipynb",
    "upload memory: 20 MB bundle",
    "server throughput: 8 threads",
    "multipart: quickstart zip",
    "multipart: 1 MB zip",
    "backtest e2e: quickstart, warm",
    "backtest e2e: quickstart, first deploy (cold)",
    "report: a completed backtest's display",
    "warm: idle worker memory",
    "warm: sweep point overhead",
    "warm: sweep of 4 RSI points, 420 daily bars",
    "warm: sweep of 4 RSI points, 4,000 daily bars",
    "sweep: 2 points x 4,000 bars, cell vs the kernel loop",
    "sweep: 2 points x 420 bars, cell vs the kernel loop",
    "sweep: 2 points x 420 bars, cell vs 2 python bot.py",
    "ray: RSI backtest as a Ray job",
)


@pytest.mark.slow
def test_quick_run_prints_every_row_with_a_ratio(tmp_path: Path) -> None:
    rows_file, page_file = tmp_path / "rows.json", tmp_path / "benchmarks.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLANKLY_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.run", "--quick", "--json", str(rows_file),
         "--markdown", str(page_file)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=540,  # under pytest-timeout's 600 s
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]

    header = next(i for i, line in enumerate(out.splitlines()) if line.startswith("benchmark "))
    lines = out.splitlines()[header:]
    assert [c.strip() for c in lines[0].split("|")] == ["benchmark", "ours", "baseline", "ratio"]
    table = list(itertools.takewhile(lambda line: " | " in line, lines[2:]))
    assert len(table) == len(ROWS), "\n".join(lines)
    for line, expected in zip(table, ROWS):
        cells = [c.strip() for c in line.split("|")]
        assert cells[0].startswith(expected), line
        assert re.fullmatch(r"\d+\.\d{3}", cells[3]), f"no ratio in: {line}"

    rows = json.loads(rows_file.read_text())
    assert [r["name"] for r in rows] == [c.split("|")[0].strip() for c in table]
    for row in rows:
        assert row["baseline"] > 0 and math.isfinite(row["ratio"]) and row["ours"] >= 0, row
        assert row["details"], f"{row['name']} says nothing about what dominates"

    page = page_file.read_text()
    assert "; a quick run: small sizes, few repeats." in page
    for row in rows:  # every figure of the run is on the page, with its details
        assert f"| {row['name']} | " in page and row["details"][0] in page, row["name"]
