"""``%%blankly_deploy --backtest --param/--sweep`` and ``%blankly sweeps/sweep/cancel`` in a real IPython shell,
against a real server; the sweep's points compared with the same backtests run in the shell itself."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from blankly_magics.export.manifest import default_backtest_bytes, default_settings_bytes
from tests.fixtures_notebooks import PRICES_CSV, RSI_ENTRY, RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, write_notebook
from tests.magics_shell import interrupt_when

PARAMETERS = "#| blankly: parameters\nlow = 30\nhigh = 70\n"
SWEPT_LOGIC = RSI_LOGIC.replace("rsi[-1] < 30", "rsi[-1] < low").replace("rsi[-1] > 70", "rsi[-1] > high")
PERIOD = "--start 2010-06-01 --end 2013-03-01 --initial USD=10000"
ARGS = {"initial_values": {"USD": 10000}, "start_date": "2010-06-01", "end_date": "2013-03-01"}


@pytest.fixture
def swept_notebook(tmp_path: Path) -> Path:
    """The RSI notebook with its thresholds in a parameters cell, beside its prices and Blankly's settings."""
    shutil.copy(PRICES_CSV, tmp_path / PRICES_CSV.name)
    (tmp_path / "settings.json").write_bytes(default_settings_bytes())
    (tmp_path / "backtest.json").write_bytes(default_backtest_bytes())
    return write_notebook(tmp_path / "swept.ipynb", [RSI_IMPORTS, PARAMETERS, SWEPT_LOGIC, RSI_SETUP])


def deploy(nb: Path, options: str) -> str:
    return f"%%blankly_deploy --backtest --notebook {nb} {options}\n{RSI_ENTRY}"


@pytest.mark.parametrize("options, message", [
    ("--param lowx=1", "--param lowx: the parameters cell, cell 2 (`low = 30`), does not assign lowx "
                       "(it assigns low, high)"),
    ("--sweep lowx=1,2", "--sweep lowx: the parameters cell, cell 2 (`low = 30`), does not assign lowx"),
    ("--param low=abc", "--param low: 'abc' is not a Python or JSON literal"),
    ("--sweep high=80:65:5", "--sweep high: the range is empty (it starts at 80, past its stop 65)"),
    ("--sweep high=65:80:0", "--sweep high: the step is 0; a range counts up by a step above 0"),
    ("--sweep low=1:40:1 --sweep high=1:26:1", "the sweep has 1,040 points (40 low x 26 high); a sweep runs at "
                                               "most 1,000"),
    ("--sweep low=1,2 --maximize Sharpe", "unknown metric 'Sharpe'; Blankly's metrics are: Calmar Ratio,"),
    ("--sweep low=1,2 --constraint 'Max Drawdown (%) under 25'", "constraint 'Max Drawdown (%) under 25' does not "
                                                                 "read METRIC OP NUMBER"),
    ("--sweep low=1,2 --maximize 'Sharpe Ratio' --minimize Volatility", "give --maximize or --minimize, not both"),
    ("--maximize 'Sharpe Ratio'", "--maximize ranks the points of a sweep: add --sweep NAME=VALUES"),
    ("--param low=1 --sweep low=2,3", "low is given with --param and with --sweep: fix it or sweep it, not both"),
])
def test_bad_overrides_and_sweeps_are_one_line_errors_and_nothing_is_stored(cells, alice, swept_notebook, options,
                                                                           message):
    before = alice.snapshot()
    assert cells.fails(deploy(swept_notebook, options)).startswith(message)
    assert alice.snapshot().diff(before) == {}


@pytest.mark.parametrize("options, message", [
    ("--sweep low=1,2", "--sweep sweeps run backtests: add --backtest"),
    ("--param low=1", "--param overrides a backtest's parameters: add --backtest"),
])
def test_sweeps_and_overrides_need_backtest(cells, alice, swept_notebook, options, message):
    before = alice.snapshot()
    assert cells.fails(f"%%blankly_deploy --notebook {swept_notebook} {options}\nstrategy.start()") == message
    assert alice.snapshot().diff(before) == {}


def backtest_in_the_shell(cells, low: int, high: int) -> dict:
    """The same backtest the sweep ran for (low, high), run in the shell as a quant would: the values
    set, the strategy made afresh (a second backtest of one Blankly strategy does not start clean), then
    backtested."""
    cells.run(f"low, high = {low}, {high}")
    cells.run(RSI_SETUP)
    cells.run(f"_local = strategy.backtest(**{ARGS!r}, GUI_output=False)\n"
              "_local_metrics = {m['display_name']: m['value'] for m in _local.get_metrics().values()}")
    return cells.ip.user_ns["_local_metrics"]


@pytest.mark.slow
@pytest.mark.blankly
def test_a_sweeps_points_equal_the_same_backtests_in_the_shell(cells, alice, swept_notebook, monkeypatch):
    monkeypatch.chdir(swept_notebook.parent)  # Blankly reads its settings and the prices from the working folder
    out = cells.run(deploy(swept_notebook, f"{PERIOD} --sweep low=25,30 --sweep high=70:75:5 "
                                           "--maximize 'Cumulative Returns (%)' --constraint 'Max Drawdown (%) < 21'"))
    result = cells.last
    assert "for a sweep of 4 backtests" in out and f"Sweep {result.sweep_id} queued: 4 backtests" in out
    assert result.status == "completed", out
    table = result.table
    assert list(table.columns[:2]) == ["low", "high"] and list(table.columns[-2:]) == ["status", "backtest_id"]
    assert list(zip(table["low"], table["high"])) == [(25, 70), (25, 75), (30, 70), (30, 75)]
    assert list(table["status"]) == ["completed"] * 4 and result.backtests == list(table["backtest_id"])

    # run the notebook's cells here, then each point's backtest: the same metrics, exactly
    for source in (RSI_IMPORTS, PARAMETERS, SWEPT_LOGIC, RSI_SETUP):
        cells.run(source)
    for i, row in enumerate(result.rows):
        local = backtest_in_the_shell(cells, row["parameters"]["low"], row["parameters"]["high"])
        assert local == row["metrics"], (row["parameters"], local, row["metrics"])
        assert result.result(i).metrics == local

    # the best: the highest Cumulative Returns among the points within the drawdown limit
    within = [r for r in result.rows if r["metrics"]["Max Drawdown (%)"] < 21]
    best = max(within, key=lambda r: r["metrics"]["Cumulative Returns (%)"])
    assert result.best == {**best["parameters"], **best["metrics"]}
    html = result._repr_html_()
    assert "data:image/png;base64," in html and "blankly-sweep-table" in html  # the table and the heatmap
    assert result.best_text() in out and "Objective: maximize Cumulative Returns (%); constraints: " \
                                         "Max Drawdown (%) < 21" in out

    # the verbs see it
    listed = cells.run(f"%blankly sweeps --model {result.model_id}")
    assert result.sweep_id in listed and "4/4" in listed and "low (2), high (2)" in listed
    shown = cells.run(f"%blankly sweep {result.sweep_id}")
    assert cells.last.best == result.best and result.best_text() in shown
    backtests = cells.run(f"%blankly backtests --model {result.model_id}")
    assert "low=25, high=70" in backtests and result.sweep_id in backtests

    # minimize, on the same version's model: the lowest drawdown
    cells.run(deploy(swept_notebook, f"{PERIOD} --sweep low=25,30 --minimize 'Max Drawdown (%)'"))
    lowest = cells.last
    drawdowns = [r["metrics"]["Max Drawdown (%)"] for r in lowest.rows]
    assert lowest.best["Max Drawdown (%)"] == min(drawdowns)
    assert lowest.best["low"] == [25, 30][drawdowns.index(min(drawdowns))]
    # one backtest with overrides: its parameters are stored, shown and listed
    out = cells.run(deploy(swept_notebook, f"{PERIOD} --param low=25 --param high=75"))
    single = cells.last
    assert single.status == "completed" and single.metrics == result.rows[1]["metrics"]
    assert single.parameters == {"low": 25, "high": 75} and "Parameters: low=25, high=75" in out


def test_cancel_takes_a_sweep_id(cells, alice, swept_notebook):
    from blankly_magics import session as sessions
    from blankly_magics.workflow import Feedback, ModelSource, RunRequest, Sweep, run

    signed = sessions.current()
    slow = write_notebook(swept_notebook.parent / "slow.ipynb", [
        "#| blankly: parameters\ndelay = 0\n", "#| blankly\nimport time\n"])
    request = RunRequest(kind="backtest", notebook=slow, wait=False, sweep=Sweep({"delay": [300, 300, 300]}))
    started = run(signed, request, ModelSource(slow, entry="time.sleep(delay)"), Feedback())
    out = cells.run(f"%blankly cancel {started.sweep_id}")
    assert out.startswith(f"Sweep {started.sweep_id}: cancelled (") and "3 cancelled" in out
    assert cells.fails("%blankly cancel nosuch").startswith("no backtest or sweep 'nosuch' on ")


def test_interrupting_a_sweep_leaves_it_running_and_cancellable(cells, alice, tmp_path):
    from blankly_magics import session as sessions

    slow = write_notebook(tmp_path / "slow.ipynb", ["#| blankly: parameters\ndelay = 0\n", "#| blankly\nimport time\n"])
    client = sessions.current().client
    interrupted = interrupt_when(lambda: any(sweep["counts"].get("running") for sweep in client.sweeps()))
    out = cells.run(f"%%blankly_deploy --backtest --notebook {slow} --sweep delay=300,301,302\ntime.sleep(delay)")
    assert interrupted.wait(10)
    stopped = cells.last
    sweep_id = stopped.sweep_id
    assert (f"Stopped waiting. Sweep {sweep_id} keeps running on the server (0 of 3 points finished): see it with "
            f"%blankly sweep {sweep_id}, or stop the rest with %blankly cancel {sweep_id}") in out
    assert not stopped.done and [r["parameters"]["delay"] for r in stopped.rows] == [300, 301, 302]
    assert client.sweep_status(sweep_id)["status"] == "running"
    out = cells.run(f"%blankly cancel {sweep_id}")
    assert out == f"Sweep {sweep_id}: cancelled (3 cancelled)\n"
