"""Turn the reliability record (test-artifacts/reliability.json) into the docs' reliability page.

    python tests/report_reliability.py                            # markdown on stdout
    python tests/report_reliability.py --out docs/reliability.md  # the page the docs site shows

The tests write the figures (tests/reliability.py) only after their assertions held, so
the page says what the last run of the reliability tests showed: run them first:

    python -m pytest tests/test_hostile_server.py tests/test_hostile_auth.py \\
        tests/test_hostile_client.py tests/server/test_faults.py tests/test_load.py tests/test_secrets_scan.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blankly_magics.files import atomic_write  # noqa: E402
from tests.reliability import SECTIONS, artifact_path, load  # noqa: E402

TITLES = {
    "bad input": "Bad input: every case answered with a clear error, nothing stored",
    "faults": "Faults survived: nothing lost, nothing half-stored",
    "load": "Load held (loopback, bounded, stops by itself)",
    "secrets": "Secrets: none in anything the tests produced",
}
SKIP = {"what", "recordedAt", "by_defect"}  # shown elsewhere or too long for a table cell
TESTS = ("tests/test_hostile_server.py tests/test_hostile_auth.py tests/test_hostile_client.py "
         "tests/server/test_faults.py tests/test_load.py tests/test_secrets_scan.py")


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _figures(entry: dict[str, Any]) -> str:
    return "; ".join(f"{key.replace('_', ' ')} {_value(value)}" for key, value in entry.items()
                     if key not in SKIP)


def _defects(counts: dict[str, int]) -> str:
    """``route: defect`` counts, grouped by route; one count for all when they are equal."""
    same = set(counts.values())
    groups: dict[str, list[str]] = {}
    for key in sorted(counts):
        route, _, defect = key.rpartition(": ")
        groups.setdefault(route or "all", []).append(defect if len(same) == 1 else f"{defect} ({counts[key]})")
    text = "; ".join(f"{route}: {', '.join(names)}" for route, names in groups.items())
    return f"{same.pop()} cases each. {text}" if len(same) == 1 else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(data: dict[str, Any]) -> str:
    sections = data.get("sections", {})
    intro = [
        "# Reliability",
        "",
        "<!-- Written by `python tests/report_reliability.py --out docs/reliability.md`: "
        "edit the tests or the script, not this file. -->",
        "",
        "What the reliability tests showed on their last run: hostile input at every route, faults "
        "on the whole path (killed servers, broken networks, full and read-only disks, interrupts), "
        "load on loopback and a scan for secrets. The tests record these figures themselves "
        "(`tests/reliability.py`), and only once their assertions held; this page is written from "
        "that record. Reproduce them with:",
        "",
        "```bash",
        f"python -m pytest {TESTS}",
        "python tests/report_reliability.py --out docs/reliability.md",
        "```",
        "",
    ]
    lines: list[str] = []
    totals = {"cases": 0, "survived": 0}
    for section in SECTIONS:
        checks = sections.get(section) or {}
        if not checks:
            continue
        lines += [f"## {TITLES[section]}", "", "| check | what held | figures |", "| --- | --- | --- |"]
        for name, entry in sorted(checks.items()):
            totals["cases"] += int(entry.get("cases", 0) or 0)
            totals["survived"] += int(entry.get("survived", 0) or 0)
            lines.append(f"| {_cell(name)} | {_cell(str(entry.get('what', '')))} | {_cell(_figures(entry))} |")
        for name, entry in sorted(checks.items()):
            if entry.get("by_defect"):
                lines += ["", f"Defects tried ({_cell(name)}): {_defects(entry['by_defect'])}."]
        lines.append("")
    missing = [s for s in SECTIONS if not sections.get(s)]
    summary = (f"In all: {totals['cases']} hostile inputs refused cleanly, {totals['survived']} faults survived"
               + (f"; no figures yet for: {', '.join(missing)}" if missing else "") + ".")
    lines = [*intro, summary, "", *lines]
    if data.get("updatedAt"):
        lines.append(f"_Last recorded: {data['updatedAt']}._")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the reliability record as the docs' reliability page.")
    parser.add_argument("--json", type=Path, default=None, help=f"the record (default {artifact_path()})")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here (atomically) instead of stdout")
    args = parser.parse_args(argv)
    path = args.json or artifact_path()
    if not path.exists():
        print(f"no reliability record at {path}: run the reliability tests first", file=sys.stderr)
        return 1
    text = render(load(path))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, text, mode=0o644)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
