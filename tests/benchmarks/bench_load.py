"""What ``%load_ext blankly_magics`` adds to a fresh IPython, vs ``%load_ext sql`` (jupysql).

Each sample is a fresh ``python -c`` process that makes an IPython
``InteractiveShell`` and then loads one extension (or none). The figure is the
time spent in ``%load_ext`` itself (perf_counter around it), which is exactly what
the extension adds since everything else in the process is the same; the
processes' wall times are kept as a cross-check (they also catch work done at
exit). Bytecode caching is on, in a private prefix, as in any installed package
(this machine sets PYTHONDONTWRITEBYTECODE, which would time the compiler instead).
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .harness import Row, child_env, interleaved, last_json_line, median, run_child, spread

NAME = "load"
EXTENSIONS = {"bare": None, "ours": "blankly_magics", "jupysql": "sql"}

CHILD = """
import json, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
t = time.perf_counter()
if {ext!r} is not None:
    shell.run_line_magic("load_ext", {ext!r})
print(json.dumps({{"load_ms": (time.perf_counter() - t) * 1000}}))
"""


def _env(tmp: Path) -> dict[str, str]:
    env = child_env(IPYTHONDIR=str(tmp / "ipython"), PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _sample(ext: str | None, env: dict[str, str], walls: list[float]) -> float:
    started = time.perf_counter()
    out = run_child(CHILD.format(ext=ext), env=env, timeout=120)
    walls.append((time.perf_counter() - started) * 1000)
    return last_json_line(out)["load_ms"]


def import_breakdown(env: dict[str, str], top: int = 8) -> list[str]:
    """``python -X importtime`` of the load alone: the modules it imported, slowest first.

    ``%load_ext`` imports the package through importlib.import_module, which
    importtime does not log, so the package is imported by a statement first."""
    code = (
        "import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\nprint('--load--', file=sys.stderr, flush=True)\n"
        "import blankly_magics\nshell.run_line_magic('load_ext', 'blankly_magics')\n"
    )
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    after = proc.stderr.split("--load--", 1)[-1]
    rows = []
    for line in after.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4), int(m.group(1))))
    rows.sort(reverse=True)
    return [f"import {name}: {cum / 1000:.1f} ms cumulative, {own / 1000:.1f} ms own"
            for cum, _, name, own in rows[:top]]


def run(quick: bool = False) -> list[Row]:
    import importlib.util

    if importlib.util.find_spec("sql") is None:
        raise RuntimeError("the baseline needs jupysql: pip install jupysql (or pip install -e '.[bench]')")
    repeats = 3 if quick else 15
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        env = _env(Path(tmp))
        walls: dict[str, list[float]] = {name: [] for name in EXTENSIONS}
        for name, ext in EXTENSIONS.items():  # warm-up: fills the bytecode cache, not counted
            _sample(ext, env, [])
        samples = interleaved(
            {name: (lambda ext=ext, w=walls[name]: _sample(ext, env, w)) for name, ext in EXTENSIONS.items()},
            repeats,
        )
        ours, jupysql = median(samples["ours"]), median(samples["jupysql"])
        bare_wall = median(walls["bare"])
        details = [
            f"%load_ext time, ms: ours {spread(samples['ours'])}; jupysql {spread(samples['jupysql'])}",
            f"process wall time, ms: bare IPython {spread(walls['bare'], 0)}, "
            f"+ours {median(walls['ours']) - bare_wall:+.0f}, +jupysql {median(walls['jupysql']) - bare_wall:+.0f}",
        ]
        if not quick:
            details.append("what the load imports (python -X importtime):")
            details += ["  " + line for line in import_breakdown(env)]
    return [Row("load: %load_ext added (vs jupysql)", ours, jupysql, "ms", details)]
