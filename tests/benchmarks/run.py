"""Run the benchmarks and print one table of ratios against baselines measured in the same run.

    python -m tests.benchmarks.run [--quick] [--only NAME] [--json FILE] [--markdown FILE]

``--quick`` uses small sizes and few repeats (what CI runs, so the benchmarks keep
working; its figures mean little). ``--markdown`` writes the docs' benchmarks page
(``docs/benchmarks.md``) from the run. Speed is never a pass/fail here: the exit code
is 1 only when a benchmark could not run at all.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from typing import Optional, Sequence

from .harness import Row, table
from .page import render

# name -> module; the order is the table's order
BENCHMARKS = {
    "load": "bench_load",
    "export": "bench_export",
    "upload_memory": "bench_upload_memory",
    "server_throughput": "bench_server_throughput",
    "multipart": "bench_multipart",
    "backtest_e2e": "bench_backtest_e2e",
    "report": "bench_report",
    "warm": "bench_warm",
    "sweep": "bench_sweep",
    "ray": "bench_ray",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (the CI smoke run)")
    parser.add_argument("--only", metavar="NAME", action="append", choices=list(BENCHMARKS),
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="also write the docs' benchmarks page (every benchmark)")
    args = parser.parse_args(argv)
    if args.markdown and args.only:
        parser.error("--markdown writes the whole page: run every benchmark (drop --only)")

    rows: list[Row] = []
    sections: list[tuple[str, str, list[Row]]] = []
    load = os.getloadavg()[0]
    failed: list[str] = []
    for name, module in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name} ...", flush=True)
        started = time.monotonic()
        try:
            bench = importlib.import_module(f"{__package__}.{module}")
            got = bench.run(quick=args.quick)
        except Exception:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            print(f"!! {name} could not run:\n{traceback.format_exc()}", flush=True)
            continue
        for row in got:
            print(f"   {row.name}: ours {row.ours:.4g} {row.unit}, baseline {row.baseline:.4g} {row.unit}")
            for line in row.details:
                print(f"     {line}")
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
        rows.extend(got)
        sections.append((name, bench.__doc__ or "", got))

    print()
    print(table(rows))
    if failed:
        print(f"\nCould not run: {', '.join(failed)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([{**asdict(r), "ratio": r.ratio} for r in rows], fh, indent=2)
    if args.markdown and not failed:  # a page missing a benchmark would read as complete
        from blankly_magics.files import atomic_write

        atomic_write(args.markdown, render(sections, args.quick, load), mode=0o644)
        print(f"wrote {args.markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
