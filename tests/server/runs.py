"""Real model zips, a recorder of the runner's reports, and finding a run's processes: for the server's tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import psutil

from blankly_magics.server.runner import RUN_TOKEN_VAR

from tests.fixtures_notebooks import (
    PRICES_CSV,
    RSI_ENTRY,
    RSI_IMPORTS,
    RSI_LOGIC,
    RSI_SETUP,
)

# ---------------------------------------------------------------- real model zips


def rsi_script(entry: str = RSI_ENTRY) -> str:
    """The RSI strategy as the exporter writes it: marked cells, then the entry cell."""
    cells = [RSI_IMPORTS, RSI_LOGIC, RSI_SETUP]
    return "\n".join(c.replace("#| blankly\n", "") for c in cells) + "\n" + entry


def blankly_settings() -> tuple[dict, dict]:
    """Blankly's default settings.json / backtest.json contents (GUI left ON on purpose:
    the runner must keep runs headless whatever the upload says)."""
    from blankly_magics.export.manifest import DEFAULT_BACKTEST_SETTINGS, DEFAULT_GENERAL_SETTINGS

    backtest = json.loads(json.dumps(DEFAULT_BACKTEST_SETTINGS))
    backtest["settings"]["GUI_output"] = True
    return json.loads(json.dumps(DEFAULT_GENERAL_SETTINGS)), backtest


def model_zip(
    path: Path,
    script: str,
    *,
    requirements: str = "",
    files: Optional[dict[str, str]] = None,
    manifest: Optional[dict[str, Any]] = None,
    prices: bool = True,
) -> Path:
    """A model zip as the platform expects it: model/blankly.json, the script, settings, data."""
    settings, backtest = blankly_settings()
    meta = {
        "main_script": "./bot.py",
        "working_directory": ".",
        "requirements": "./requirements.txt",
        "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "type": "strategy",
    }
    meta.update(manifest or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/blankly.json", json.dumps(meta))
        zf.writestr("model/bot.py", script)
        zf.writestr("model/requirements.txt", requirements)
        zf.writestr("model/settings.json", json.dumps(settings))
        zf.writestr("model/backtest.json", json.dumps(backtest))
        if prices:
            zf.write(PRICES_CSV, "model/" + PRICES_CSV.name)
        for name, text in (files or {}).items():
            zf.writestr("model/" + name, text)
    return path


METRICS_DUMP = """
import json as _json
_args = _json.load(open("args.json"))
_result = strategy.backtest(**_args, GUI_output=False)
_metrics = {m["display_name"]: m["value"] for m in _result.metrics.values()}
_json.dump({"metrics": _metrics, "trades": len(_result.trades["created"])}, open("direct.json", "w"))
"""


def run_directly(tmp: Path, args: dict) -> dict:
    """Run the RSI script with plain `python` (no hook, not deployed) and the same args."""
    settings, backtest = blankly_settings()
    backtest["settings"]["GUI_output"] = False
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "bot.py").write_text(rsi_script(METRICS_DUMP))
    (tmp / "settings.json").write_text(json.dumps(settings))
    (tmp / "backtest.json").write_text(json.dumps(backtest))
    (tmp / "args.json").write_text(json.dumps(args))
    (tmp / PRICES_CSV.name).write_bytes(PRICES_CSV.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BACKTESTING")}
    env["BROWSER"] = "true"
    proc = subprocess.run([sys.executable, "bot.py"], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "direct.json").read_text())


# ---------------------------------------------------------------- recording callbacks


TICKER = (
    "import os, time\n"
    "print('model', os.environ['MODEL_ID'], 'backtesting', os.environ.get('BACKTESTING'), flush=True)\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    print('tick', n, flush=True)\n"
    "    time.sleep(0.5)\n"
)


class Recorder:
    """Collects the runner's reports and lets a test wait for a state."""

    def __init__(self) -> None:
        self.backtests: dict[str, list[dict]] = {}
        self.live: dict[str, list[dict]] = {}
        self.sweeps: dict[str, list[dict]] = {}
        self._cond = threading.Condition()

    def on_backtest(self, backtest_id: str, fields: dict) -> None:
        with self._cond:
            self.backtests.setdefault(backtest_id, []).append(dict(fields))
            self._cond.notify_all()

    def on_live(self, model_id: str, fields: dict) -> None:
        with self._cond:
            self.live.setdefault(model_id, []).append(dict(fields))
            self._cond.notify_all()

    def on_sweep(self, sweep_id: str, fields: dict) -> None:
        with self._cond:
            self.sweeps.setdefault(sweep_id, []).append(dict(fields))
            self._cond.notify_all()

    @staticmethod
    def _merged(reports: list[dict]) -> dict:
        merged: dict = {}
        for fields in reports:
            merged.update(fields)
        return merged

    def backtest(self, backtest_id: str) -> dict:
        return self._merged(self.backtests.get(backtest_id, []))

    def live_state(self, model_id: str) -> dict:
        return self._merged(self.live.get(model_id, []))

    def sweep(self, sweep_id: str) -> dict:
        return self._merged(self.sweeps.get(sweep_id, []))

    def wait(self, predicate: Callable[[], bool], timeout: float = 240.0) -> None:
        """Wait for a report, re-checking every 0.2 s too (some predicates read log files)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"condition not reached; backtests={self.backtests} live={self.live}")
                self._cond.wait(min(0.2, left))

    def wait_backtest(self, backtest_id: str, timeout: float = 240.0) -> dict:
        self.wait(lambda: self.backtest(backtest_id).get("status") in ("completed", "failed", "cancelled"),
                  timeout)
        return self.backtest(backtest_id)

    def wait_sweep(self, sweep_id: str, timeout: float = 240.0) -> dict:
        self.wait(lambda: self.sweep(sweep_id).get("status") in ("completed", "failed", "cancelled"), timeout)
        return self.sweep(sweep_id)

    def wait_live(self, model_id: str, predicate: Callable[[dict], bool], timeout: float = 120.0) -> dict:
        self.wait(lambda: predicate(self.live_state(model_id)), timeout)
        return self.live_state(model_id)


def run_processes(root: Path) -> list[int]:
    """Pids of the running runs of runners whose data dir lies under ``root``: from the runners'
    pid records, one per process start (the top of its sandbox: the pid the runner reports), and
    any process of an unconfined run (it carries the run token and works under ``root``). Idle
    warm workers (no run yet) are not runs.

    Other tests' servers may run models at the same time: only ours count."""
    root = Path(root).resolve()
    found = set()
    for record in root.rglob("runs/pids/*.json"):
        try:
            data = json.loads(record.read_text())
            if data.get("kind") == "warm":
                continue
            proc = psutil.Process(data["pid"])
            if proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - data["create_time"]) < 0.01:
                found.add(proc.pid)
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            continue
    for proc in psutil.process_iter():
        try:
            cwd = Path(proc.cwd()).resolve()
            idle = any(p.name == "warm" and p.parent.name == "runs" for p in cwd.parents)
            if (RUN_TOKEN_VAR in proc.environ() and proc.status() != psutil.STATUS_ZOMBIE
                    and cwd.is_relative_to(root) and not idle):
                found.add(proc.pid)
        except (psutil.Error, OSError):
            continue
    return sorted(found)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


