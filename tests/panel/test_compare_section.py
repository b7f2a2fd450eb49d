"""The panel's Compare view: the completed backtests of the model picked in Target, two or more
picked, their metrics side by side and their curves overlaid (real widgets, a real server)."""
from __future__ import annotations

import pytest

from ..fixtures_panel import sign_in_with_form
from ..fixtures_report import DESCRIPTIONS, Backtested

pytestmark = [pytest.mark.slow, pytest.mark.blankly, pytest.mark.usefixtures("panel_home")]


def shown_html(output) -> str:
    return "\n".join(str(out.get("data", {}).get("text/html", "")) for out in output.outputs)


def test_pick_two_backtests_of_the_model_and_compare_them(make_panel, backtested: Backtested) -> None:
    panel = make_panel()
    compare = panel.compare
    assert compare.area.layout.display == "none"  # nothing to compare before signing in
    sign_in_with_form(panel, backtested.server)
    assert compare.area.layout.display != "none"
    assert compare.picker.options == () and "Pick a model in Target" in compare.hint.value

    panel.target.model_dd.value = backtested.model_id  # picking the model lists its completed backtests
    labels = [label for label, _ in compare.picker.options]
    assert [value for _, value in compare.picker.options] == list(reversed(backtested.backtest_ids))
    assert labels[0].startswith(f"v2 \u00b7 {DESCRIPTIONS[1]} \u00b7 ") and "return " in labels[0]
    assert "Sharpe " in labels[1] and "2 completed backtest(s) of this model" in compare.hint.value

    compare.picker.value = (backtested.backtest_ids[0],)
    compare.compare_button.click()
    assert panel.status_text == "\u2716 Pick two or more backtests to compare (Ctrl- or Shift-click in the list)"

    compare.picker.value = tuple(backtested.backtest_ids)
    compare.compare_button.click()
    assert panel.status_text == "\u2714 Compared 2 backtests.", panel.status_text
    assert [c[:2] for c in compare.last.table.columns] == ["v1", "v2"]  # oldest first, as they were made
    html = shown_html(compare.output)
    assert "<img alt='equity curves overlaid'" in html and "Worst drawdown (%)" in html
    assert all(button.disabled is False for button in compare.buttons())

    compare.list_button.click()  # listing again keeps what was picked
    assert set(compare.picker.value) == set(backtested.backtest_ids)
    panel.target.mode.value = "live"
    assert compare.area.layout.display == "none"
    panel.target.mode.value = "backtest"
    assert compare.area.layout.display != "none"
