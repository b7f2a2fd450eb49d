"""The blankly_external platform hook, exercised inside real Blankly processes."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from blankly_magics.server.runner import HOOK_DIR
from tests.server.runs import blankly_settings, rsi_script
from tests.fixtures_notebooks import PRICES_CSV, RSI_BACKTEST_ARGS


def run_model(tmp_path: Path, script: str, *, args: Optional[dict] = None, hook: bool = True,
              backtesting: bool = True, sweep_point: bool = False) -> tuple[subprocess.CompletedProcess, Path]:
    """Run a script as the runner would (hook first on PYTHONPATH), in a model folder."""
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    settings, backtest = blankly_settings()
    (model / "settings.json").write_text(json.dumps(settings))
    (model / "backtest.json").write_text(json.dumps(backtest))
    (model / PRICES_CSV.name).write_bytes(PRICES_CSV.read_bytes())
    (model / "bot.py").write_text(script)
    report = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BACKTESTING", "BACKTESTING_ARGS")}
    env.update({"BLANKLY_MAGICS_REPORT_DIR": str(report), "BROWSER": "true", "MPLBACKEND": "Agg"})
    if hook:
        env["PYTHONPATH"] = str(HOOK_DIR)
    if backtesting:
        env["BACKTESTING"] = "1"
        env["BACKTESTING_ARGS"] = base64.b64encode(json.dumps(args or {}).encode()).decode()
    if sweep_point:
        env["BLANKLY_MAGICS_SWEEP_POINT"] = "1"
    proc = subprocess.run([sys.executable, "bot.py"], cwd=model, env=env, capture_output=True,
                          text=True, timeout=300)
    return proc, report


def events(report: Path) -> list[dict]:
    path = report / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_hook_dir_holds_only_the_hook() -> None:
    # It goes first on a model's PYTHONPATH: anything else here would shadow the model's imports.
    assert sorted(p.name for p in HOOK_DIR.iterdir() if p.name != "__pycache__") == ["blankly_external.py"]


@pytest.mark.blankly
def test_the_servers_own_environment_is_not_deployed() -> None:
    code = ("import importlib.util, blankly; "
            "print(importlib.util.find_spec('blankly_external') is None, blankly.is_deployed)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(Path(__file__).parent.parent), timeout=120, check=True)
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.blankly
def test_blankly_sees_the_hook_as_the_platform(tmp_path: Path) -> None:
    script = ("import blankly, blankly_external\n"
              "print(blankly.is_deployed, blankly.reporter is blankly_external.Reporter)\n")
    proc, _ = run_model(tmp_path, script, backtesting=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]


@pytest.mark.slow
def test_a_deployed_style_script_is_backtested_with_the_uploaded_args(tmp_path: Path) -> None:
    args = {**RSI_BACKTEST_ARGS, "initial_values": {"USD": 3000}}
    proc, report = run_model(tmp_path, rsi_script(), args=args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((report / "backtest_result.json").read_text())
    assert result["initial_account_value"] == 3000
    assert set(result["metrics"]) >= {"Sharpe Ratio", "Max Drawdown (%)", "Cumulative Returns (%)"}
    assert all(isinstance(v, (int, float)) or v is None for v in result["metrics"].values())
    assert "Blankly Metrics" in proc.stdout and "Account History" in proc.stdout  # what a local print shows
    kinds = [e["event"] for e in events(report)]
    assert kinds[:2] == ["exchange", "strategy"] and "backtest_result" in kinds
    start = next(e for e in events(report) if e["event"] == "backtest_start")
    assert start["args"]["GUI_output"] is False and start["args"]["initial_values"] == {"USD": 3000}
    assert not list((tmp_path / "model").glob("*.html"))  # no chart written: headless


@pytest.mark.slow
def test_a_sweep_point_prints_the_metrics_without_the_history_tables(tmp_path: Path) -> None:
    proc, report = run_model(tmp_path, rsi_script(), args=RSI_BACKTEST_ARGS, sweep_point=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((report / "backtest_result.json").read_text())["metrics"]
    printed = proc.stdout[proc.stdout.index("Blankly Metrics"):]
    sharpe = next(line for line in printed.splitlines() if line.startswith("Sharpe Ratio:"))
    assert sharpe.split()[-1] == str(metrics["Sharpe Ratio"])
    assert "Account History" not in proc.stdout and "in this point's result" in proc.stdout


@pytest.mark.slow
def test_a_script_that_only_defines_a_strategy_is_backtested_when_it_ends(tmp_path: Path) -> None:
    proc, report = run_model(tmp_path, rsi_script("print('defined')\n"), args=RSI_BACKTEST_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "defined" in proc.stdout
    assert json.loads((report / "backtest_result.json").read_text())["initial_account_value"] == 10000


@pytest.mark.blankly
def test_a_script_that_crashes_is_not_backtested_at_exit(tmp_path: Path) -> None:
    script = rsi_script("raise KeyError('oops')\n")
    proc, report = run_model(tmp_path, script, args=RSI_BACKTEST_ARGS)
    assert proc.returncode == 1
    assert "KeyError: 'oops'" in proc.stderr
    assert not (report / "backtest_result.json").exists()


@pytest.mark.blankly
def test_live_reports_are_recorded_and_notifications_are_not_sent(tmp_path: Path) -> None:
    script = (
        "import math, blankly\n"
        "import numpy as np\n"
        "r = blankly.reporter\n"
        "r.export_live_var(3.5, 'threshold', 'RSI threshold')\n"
        "r.log_market_order({'id': 'o1', 'size': np.float64(1.5), 'bad': float('nan')}, 'keyless')\n"
        "r.email('rsi crossed 70')\n"
        "r.text('sell now')\n"
        "r.some_future_report('x', y=1)\n"
        "print('done')\n"
    )
    proc, report = run_model(tmp_path, script, backtesting=False)
    assert proc.returncode == 0, proc.stderr
    got = {e["event"]: e for e in events(report)}
    assert got["live_var"]["name"] == "threshold" and got["live_var"]["value"] == 3.5
    assert got["market_order"]["order"] == {"id": "o1", "size": 1.5, "bad": None}
    assert got["email"]["message"] == "rsi crossed 70"
    assert got["text"]["message"] == "sell now"
    assert got["report"]["name"] == "some_future_report"
    assert "email recorded (not sent" in proc.stdout


@pytest.mark.blankly
def test_results_are_made_json_safe(tmp_path: Path) -> None:
    script = (
        "import json, blankly_external as h\n"
        "import numpy as np, pandas as pd\n"
        "value = {1: np.int64(2), 'f': np.float32(0.5), 'inf': float('inf'), 'arr': np.array([1.0, np.nan]),\n"
        "         'ts': pd.Timestamp('2020-01-01', tz='UTC'), 'df': pd.DataFrame({'a': [1, 2]}),\n"
        "         'fn': len, 'set': {3}}\n"
        "print(json.dumps(h.plain(value), allow_nan=False, sort_keys=True))\n"
    )
    proc, _ = run_model(tmp_path, script, backtesting=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "1": 2, "f": 0.5, "inf": None, "arr": [1.0, None], "ts": 1577836800.0,
        "df": [{"a": 1}, {"a": 2}], "fn": "len", "set": [3],
    }


def test_bad_backtesting_args_fail_clearly(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    env = {**os.environ, "PYTHONPATH": str(HOOK_DIR), "BACKTESTING": "1", "BACKTESTING_ARGS": "%%%not-base64"}
    code = "import blankly_external as h; h.backtest_args()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=model, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "BACKTESTING_ARGS is not base64-encoded JSON" in proc.stderr


LIVE_ON_REPLAY = '''
import os, time
import blankly
from blankly_magics.replay import ReplayExchange


def price_event(price, symbol, state):
    n = state.variables.setdefault("n", 0)
    state.variables["n"] = n + 1
    state.interface.market_order(symbol, side="buy" if n % 2 == 0 else "sell", size=1)
    if n == 1:
        state.interface.limit_order(symbol, side="buy", price=round(price * 2, 2), size=1)  # fills on the next bar


exchange = ReplayExchange("GOOG-USD-1d.csv", "GOOG-USD", interval=0.25, initial={"USD": 10000}, warmup=5)
strategy = blankly.Strategy(exchange)
strategy.add_price_event(price_event, symbol="GOOG-USD", resolution=0.25)
blankly.reporter.export_live_var(14, "rsi_window", "bars in the RSI")
blankly.reporter.text("starting")
strategy.start()
time.sleep(2.5)
os._exit(0)
'''


@pytest.mark.slow
@pytest.mark.blankly
def test_a_live_strategy_reports_its_orders_their_fills_and_its_account_value(tmp_path: Path) -> None:
    import pandas as pd

    proc, report = run_model(tmp_path, LIVE_ON_REPLAY, backtesting=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = events(report)
    placed = [e for e in seen if e["event"] == "market_order"]
    assert len(placed) >= 5 and [e["order"]["side"] for e in placed[:4]] == ["buy", "sell", "buy", "sell"]
    assert {(e["order"]["symbol"], e["exchange"]) for e in placed} == {("GOOG-USD", "replay")}
    fills = {e["order"]["id"]: e["order"] for e in seen if e["event"] == "order_update"}
    prices = pd.read_csv(PRICES_CSV)["close"].tolist()
    for event in placed[:-1]:  # each market order is followed by its fill at a replayed close (the last one
        # may have been cut short by the script's exit)
        fill = fills[event["order"]["id"]]
        assert fill["status"] == "done" and fill["type"] == "market" and fill["price"] in prices[5:]
    limit = next(e["order"] for e in seen if e["event"] == "limit_order")
    assert fills[limit["id"]]["status"] == "done"  # the replay reported its fill
    values = [e for e in seen if e["event"] == "account_value"]
    assert values and {e["quote"] for e in values} == {"USD"} and all(5000 < e["value"] < 15000 for e in values)
    assert any(e["event"] == "live_var" and e["name"] == "rsi_window" and e["value"] == 14 for e in seen)
    assert any(e["event"] == "text" and e["message"] == "starting" for e in seen)


def test_the_prices_a_result_keeps_are_the_periods_bars_within_bounds(tmp_path: Path) -> None:
    # A controller as Blankly's backtest keeps it: records per symbol, read at its use_price column.
    code = """
import json, blankly_external as hook

class Controller:
    use_price = "open"
    prices = {s: {"time": list(range(0, 30000)), "open": [float(i + k) for i in range(30000)],
                  "close": [0.0] * 30000}
              for k, s in enumerate(["A-USD", "B-USD", "C-USD"])}

kept = hook.backtest_prices(Controller(), {"start_time": 10, "stop_time": 29000, "symbols": ["C-USD"]})
print(json.dumps({"column": kept["column"], "thinned": kept["thinned"], "symbols": list(kept["series"]),
                  "sizes": [len(s["time"]) for s in kept["series"].values()],
                  "ends": [(s["time"][0], s["time"][-1], s["price"][0]) for s in kept["series"].values()],
                  "none": hook.backtest_prices(object(), {})}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BACKTESTING")}
    env["PYTHONPATH"] = str(HOOK_DIR)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    kept = json.loads(done.stdout)
    assert kept["column"] == "open" and kept["thinned"] is True
    assert kept["symbols"] == ["C-USD", "A-USD", "B-USD"]  # the traded symbol first
    assert kept["sizes"] == [20000 // 3] * 3  # at most 20000 points in all
    assert kept["ends"] == [[10, 29000, 12.0], [10, 29000, 10.0], [10, 29000, 11.0]]  # the period's first and last
    assert kept["none"] is None
