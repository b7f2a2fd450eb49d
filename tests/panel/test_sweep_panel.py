"""The panel's Sweep section, clicked without a browser against the real local server."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from blankly_magics.panel.widgets import shown
from tests.fixtures_notebooks import PRICES_CSV, RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, write_notebook
from tests.fixtures_panel import results_html, sign_in_with_form

pytestmark = pytest.mark.usefixtures("panel_home")
SWEPT_LOGIC = RSI_LOGIC.replace("rsi[-1] < 30", "rsi[-1] < low").replace("rsi[-1] > 70", "rsi[-1] > high")
ENTRY = "#| blankly\nif blankly.is_deployed:\n    strategy.start()\n"


@pytest.fixture
def swept_notebook(tmp_path: Path) -> Path:
    shutil.copy(PRICES_CSV, tmp_path / PRICES_CSV.name)
    return write_notebook(tmp_path / "swept.ipynb", [RSI_IMPORTS, "#| blankly: parameters\nlow = 30\nhigh = 70\n",
                                                     SWEPT_LOGIC, RSI_SETUP, ENTRY])


def test_the_sweep_section_shows_in_backtest_mode_and_says_its_mistakes_in_one_line(make_panel, local_server,
                                                                                    swept_notebook):
    panel = make_panel(notebook=swept_notebook)
    sign_in_with_form(panel, local_server)
    section = panel.sweep
    panel.set_mode("live")
    assert not shown(section.sweep_button) and not shown(section.box)
    panel.set_mode("backtest")
    assert shown(section.sweep_button) and shown(section.box)

    section.sweep_button.click()
    assert panel.status_text == ("\u2716 Sweep: give the ranges to sweep, one a line, e.g. low=20,25,30 or "
                                 "high=65:80:5")
    section.ranges_input.value = "low=25,30\nhigh=80:65:5"
    section.sweep_button.click()
    assert panel.status_text.startswith("\u2716 --sweep high: the range is empty (it starts at 80, past its stop 65)")
    section.ranges_input.value = "low=25,30"
    section.constraints_input.value = "Max Drawdown (%) is small"
    section.sweep_button.click()
    assert "does not read METRIC OP NUMBER" in panel.status_text
    section.constraints_input.value = ""
    section.ranges_input.value = "lowx=1,2"
    section.sweep_button.click()
    assert panel.status_text == ("\u2716 --sweep lowx: the parameters cell, cell 2 (`low = 30`), does not assign "
                                 "lowx (it assigns low, high)")
    user_id = local_server.user_id("alice")
    assert local_server.request("POST", "/model/list", data={"projectId": user_id}).json() == []


@pytest.mark.slow
@pytest.mark.blankly
def test_a_sweep_by_clicking_shows_its_progress_table_and_heatmap(make_panel, local_server, swept_notebook):
    panel = make_panel(notebook=swept_notebook)
    sign_in_with_form(panel, local_server)
    panel.backtest.start_input.value, panel.backtest.end_input.value = "2010-06-01", "2013-03-01"
    panel.backtest.initial_input.value = "USD=10000"
    section = panel.sweep
    section.ranges_input.value = "low=25,30\nhigh=70:75:5"
    section.metric_input.value = "Cumulative Returns (%)"
    section.constraints_input.value = "Max Drawdown (%) < 50"

    section.sweep_button.click()

    result = panel.last_result
    assert result.status == "completed" and len(result.rows) == 4, panel.status_text
    assert panel.status_text == f"\u2714 Sweep {result.sweep_id} completed. {result.best_text()}."
    assert section.bar.value == section.bar.max == 4 and "4 of 4 finished" in section.detail.value
    html = results_html(panel)
    assert "blankly-sweep-table" in html and "<img alt='heatmap of Cumulative Returns (%)'" in html
    assert "r = _" not in html  # the magics' hints mean nothing in the panel
    stored = local_server.request("GET", "/sweep/status", params={"sweepId": result.sweep_id}).json()
    assert stored["objective"] == {"metric": "Cumulative Returns (%)", "goal": "maximize"}
    assert stored["constraints"] == ["Max Drawdown (%) < 50"] and stored["args"]["start_date"] == "2010-06-01"
