"""The docs' benchmarks page, written from a run's rows (``python -m tests.benchmarks.run --markdown FILE``).

Each benchmark's section is its module's docstring (what it measures, against what)
followed by its rows and the details the run printed, so the page says what was
measured and the figures come from the run itself, never from a hand.
"""
from __future__ import annotations

import os
import platform
import time
from typing import Sequence

from .harness import Row, format_value

COMMANDS = """\
```bash
pip install -e ".[test]"
python -m tests.benchmarks.run                                   # every benchmark, full sizes: a few minutes
python -m tests.benchmarks.run --only multipart                  # one of them (repeatable)
python -m tests.benchmarks.run --quick                           # small sizes, few repeats: what the test suite runs
python -m tests.benchmarks.run --markdown docs/benchmarks.md     # every benchmark, and this page
```"""

INTRO = """\
Each benchmark compares us with the obvious alternative, measured in the same run:
absolute times on a shared machine are noise, ratios are not. Ours and the baseline are
interleaved (ours, baseline, ours, ...) and each figure is the median of the samples.
`ratio` is always ours / baseline in the unit shown: below 1 is less time, memory or CPU
than the baseline, and for `uploads/s` above 1 is more uploads per second. Speed is never
a test assertion: `tests/test_benchmarks_smoke.py` only checks that a quick run of every
benchmark prints its rows."""


def _machine() -> str:
    try:
        import psutil

        ram = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:  # the figures stand without it
        ram = ""
    return f"{os.cpu_count()} cores{ram}, Python {platform.python_version()}, {platform.system()}"


def _table(rows: Sequence[Row]) -> list[str]:
    lines = ["| benchmark | ours | baseline | ratio |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.name} | {format_value(r.ours, r.unit)} | {format_value(r.baseline, r.unit)} | {r.ratio:.3f} |"
              for r in rows]
    return lines


def _description(doc: str) -> str:
    """A module docstring as Markdown: RST's double backticks become single ones."""
    return doc.strip().replace("``", "`")


def render(sections: Sequence[tuple[str, str, Sequence[Row]]], quick: bool, load: float) -> str:
    """The page: ``sections`` holds (name, module docstring, rows) per benchmark, in table order;
    ``load`` is the machine's load average when the run started."""
    everything = [row for _, _, rows in sections for row in rows]
    out = [
        "# Benchmarks",
        "",
        "<!-- Written by `python -m tests.benchmarks.run --markdown docs/benchmarks.md`: "
        "edit the benchmarks or tests/benchmarks/page.py, not this file. -->",
        "",
        INTRO,
        "",
        COMMANDS,
        "",
        f"Recorded {time.strftime('%Y-%m-%d')} on {_machine()}, load average {load:.1f} when the run "
        "started (other work on the machine widens the spreads)"
        + ("; a quick run: small sizes, few repeats." if quick else "."),
        "",
        *_table(everything),
    ]
    for name, doc, rows in sections:
        out += [
            "", f"## {name}", "",
            f"<!-- --8<-- [start:{name}] -->",
            _description(doc), "",
            f"`python -m tests.benchmarks.run --only {name}`", "",
            *_table(rows), "",
        ]
        for row in rows:
            out += [f"{row.name}:", "", "```text", *row.details, "```", ""]
        out.append(f"<!-- --8<-- [end:{name}] -->")
    return "\n".join(out) + "\n"
