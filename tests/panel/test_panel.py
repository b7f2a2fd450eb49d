"""The panel without a browser: real widgets, a real notebook, the real local server.

Buttons are clicked with ``.click()``; the panel's background work runs on an
executor that runs it at once, so each click has finished when it returns.
"""
from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import textwrap
from typing import Any, Iterator

import ipywidgets as W
import pytest

from blankly_magics import session
from blankly_magics.panel import NEW_MODEL, BlanklyPanel, PanelError, plan_label
from blankly_magics.workflow import BacktestArgsError

from ..fixtures_home import assert_not_in_environment, environment_writes
from ..fixtures_notebooks import RSI_BACKTEST_ARGS, rsi_cells, write_notebook
from ..fixtures_panel import results_html, sign_in_with_form
from ..fixtures_server import wait_for

pytestmark = pytest.mark.usefixtures("panel_home")


def widgets_of(panel: BlanklyPanel) -> list[W.Widget]:
    """Every widget the panel holds, shown or hidden."""
    found: dict[int, W.Widget] = {}
    stack = [value for value in vars(panel).values() if isinstance(value, W.Widget)]
    stack += [box for box in panel.cells.boxes]
    while stack:
        widget = stack.pop()
        if id(widget) in found:
            continue
        found[id(widget)] = widget
        stack.extend(getattr(widget, "children", ()))
    return list(found.values())


def everything_shown(panel: BlanklyPanel) -> str:
    """The state of every widget (values, labels, options, outputs) as one text."""
    parts = []
    for widget in widgets_of(panel):
        state = widget.get_state()
        parts.append(json.dumps({k: v for k, v in state.items() if not isinstance(v, (bytes, memoryview))},
                                default=str))
    return "\n".join(parts)


def buttons_enabled(panel: BlanklyPanel) -> bool:
    return not any(button.disabled for button in panel.buttons())


def assert_clean(panel: BlanklyPanel, *secrets: str) -> None:
    shown = everything_shown(panel)
    for secret in secrets:
        assert secret not in shown


# ---------------------------------------------------------------- helpers as users meet them


def test_plan_labels_show_cpu_and_ram() -> None:
    assert plan_label("small", {"cpu": 1000, "ram": 2048}) == "small \u2013 1 CPU, 2 GB RAM"
    assert plan_label("nano", {"cpu": 250, "ram": 512}) == "nano \u2013 0.25 CPU, 512 MB RAM"
    assert plan_label("odd", {}) == "odd"


# ---------------------------------------------------------------- offline: cells and preview


def test_cells_are_ticked_by_the_export_rules_and_preview_builds_without_signing_in(make_panel) -> None:
    panel = make_panel()
    ticks = {box.cell_index: box.value for box in panel.cells.boxes}
    assert ticks == {1: True, 2: False, 3: True, 4: True}  # the #| blankly cells; markdown not offered
    assert panel.cells.boxes[1].description.startswith("cell 3 (`import pandas as pd`)")
    assert "strategy.start()" in panel.cells.entry_input.value  # the Strategy the cells bind
    assert panel.cells.files_select.options == ("GOOG-USD-1d.csv",)
    assert "Not signed in" in panel.status_text and panel.sign_in.sign_in_form.layout.display != "none"

    panel.cells.preview_button.click()

    assert panel.status_text.startswith("\u2714 Preview: 6 files")
    summary = results_html(panel)
    assert "3 cell(s) taken" in summary and "GOOG-USD-1d.csv" in summary and "bot.py" in summary
    assert "cell 3 " not in summary  # the unticked exploration cell (JupyterLab's cell 3) stays out
    assert buttons_enabled(panel)


def test_extra_files_picked_in_include_go_into_the_model(make_panel, rsi_notebook) -> None:
    folder = rsi_notebook.parent
    (folder / "params").mkdir()
    (folder / "params" / "thresholds.json").write_text('{"low": 30, "high": 70}')
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    panel = make_panel()
    assert panel.cells.files_select.options == ("GOOG-USD-1d.csv", "params/thresholds.json")  # nothing hidden

    panel.cells.files_select.value = ("params/thresholds.json",)
    panel.cells.preview_button.click()

    assert "params/thresholds.json" in results_html(panel), panel.status_text


def test_an_undefined_name_in_a_ticked_cell_is_one_line_naming_the_cell(make_panel, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "broken.ipynb",
                              rsi_cells() + ["#| blankly\nthreshold = tuned_threshold(30)\n"])
    panel = make_panel(notebook)

    panel.cells.preview_button.click()

    line = panel.status_text
    assert line.startswith("\u2716 cannot build the model:") and "\n" not in line  # the magics' words
    assert "cell 6 (`threshold = tuned_threshold(30)`)" in line and "tuned_threshold" in line
    assert isinstance(panel.last_error, Exception) and buttons_enabled(panel)
    assert panel.results.outputs == ()


def test_unticking_the_imports_cell_is_caught_before_upload(make_panel) -> None:
    panel = make_panel()
    panel.cells.boxes[0].value = False  # cell 1: import blankly

    panel.cells.preview_button.click()

    assert "cannot build the model" in panel.status_text and "blankly" in panel.status_text


# ---------------------------------------------------------------- against the real server


@pytest.mark.blankly
def test_backtest_by_clicking_against_the_local_server(make_panel, local_server) -> None:
    panel = make_panel()
    token = sign_in_with_form(panel, local_server)

    assert panel.sign_in.token_input.value == ""  # used, then dropped from the widget
    assert local_server.url in panel.sign_in.who.value and panel.sign_in.sign_in_form.layout.display == "none"
    assert panel.status_text == "\u2714 Ready."
    user_id = local_server.user_id("alice")
    assert panel.target.project_dd.value == user_id  # the personal project
    plans = local_server.request("POST", "/project/plans", data={"type": "backtesting"}).json()
    assert [value for _, value in panel.target.plan_dd.options] == list(plans)
    assert all("CPU" in label and "RAM" in label for label, _ in panel.target.plan_dd.options)
    assert panel.target.plan_dd.value == next(iter(plans))
    assert panel.target.model_dd.value == NEW_MODEL and panel.target.model_name.layout.display != "none"

    panel.backtest.start_input.value, panel.backtest.end_input.value = "2010-06-01", "2013-03-01"
    panel.backtest.initial_input.value = "USD=10000"
    panel.target.description.value = "first try from the panel"
    panel.backtest.backtest_button.click()

    assert "completed" in panel.status_text, panel.status_text
    assert panel.progress.value == 100 and buttons_enabled(panel)
    shown = results_html(panel)
    assert "Sharpe Ratio" in shown and "Max Drawdown (%)" in shown
    assert "<img alt='equity curve'" in shown
    assert "r = _" not in shown and "More:" not in shown  # the magics' hints mean nothing in the panel

    # What the server received: one version of a new model named after the notebook,
    # and a backtest with the typed arguments.
    model_id = panel.target.model_dd.value
    assert model_id != NEW_MODEL  # the panel picked the new model
    models = local_server.request("POST", "/model/list", data={"projectId": user_id}).json()
    assert [(m["name"], m["modelId"]) for m in models] == [("rsi", model_id)]
    versions = local_server.request("GET", "/model/versions", params={"modelId": model_id}).json()
    assert len(versions) == 1
    backtest_id = panel.last_result.backtest_id
    stored = local_server.request("GET", "/backtest/result", params={"backtestId": backtest_id}).json()
    assert stored["status"] == "completed" and stored["args"] == RSI_BACKTEST_ARGS
    assert stored["description"] == "first try from the panel"
    assert stored["result"]["metrics"]

    # A second click adds a version to the same model.
    panel.backtest.to_input.value = ""
    panel.backtest.backtest_button.click()
    assert "completed" in panel.status_text, panel.status_text
    versions = local_server.request("GET", "/model/versions", params={"modelId": model_id}).json()
    assert len(versions) == 2

    assert_clean(panel, token, local_server.id_token("alice"))

    # A new panel on the same notebook picks the model it used last (the magics' side file).
    again = make_panel()
    assert again.target.model_dd.value == model_id and again.target.model_name.layout.display == "none"


@pytest.mark.slow
@pytest.mark.blankly
def test_a_period_without_prices_is_said_once_naming_the_panels_fields(make_panel, local_server) -> None:
    panel = make_panel()
    sign_in_with_form(panel, local_server)
    panel.backtest.to_input.value = "1y"  # the shipped prices end in 2013
    panel.backtest.initial_input.value = "USD=10000"
    panel.backtest.backtest_button.click()
    said = ("no prices in the backtest period (the last 1y (to: 1y)): give a start and an end within your data "
            "with the panel's Start and End fields")
    assert panel.status_text.endswith("failed: the reason is below."), panel.status_text
    shown = html.unescape(results_html(panel)) + panel.status_text
    assert shown.count(said) == 1 and "Try adding arguments" not in shown


def test_a_typed_token_wins_over_the_environment_and_never_enters_it(make_panel, local_server, monkeypatch) -> None:
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", local_server.refresh_token("bob"))
    panel = make_panel()

    with environment_writes() as writes:  # what a process started during sign-in would inherit
        token = sign_in_with_form(panel, local_server, user="alice")

    signed = session.current()
    assert signed.user_id == local_server.user_id("alice") and signed.token_source == "the sign-in form"
    assert_not_in_environment(token, writes)
    assert_clean(panel, token)
    assert token not in repr(panel) + repr(signed)


@pytest.mark.blankly
def test_deploy_live_asks_for_one_confirmation_then_shows_logs_and_stops(make_panel, local_server, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "live" / "ticker.ipynb", [
        "#| blankly\nimport time\n\nprint('ticker model up', flush=True)\n",
        "#| blankly\nwhile True:\n    time.sleep(1)\n",
    ])
    panel = make_panel(notebook)
    sign_in_with_form(panel, local_server)
    user_id = local_server.user_id("alice")
    backtest_plans = panel.target.plan_dd.options
    panel.target.mode.value = "live"
    assert panel.deploy.deploy_button.layout.display != "none" and panel.backtest.backtest_button.layout.display == "none"
    live_plans = local_server.request("POST", "/project/plans", data={"type": "live"}).json()
    assert [value for _, value in panel.target.plan_dd.options] == list(live_plans)
    assert backtest_plans  # the backtesting plans were shown before

    panel.deploy.deploy_button.click()
    assert panel.deploy.deploy_button.description == "Confirm deploy live"
    assert "Confirm deploy live" in panel.status_text
    assert local_server.request("POST", "/model/list", data={"projectId": user_id}).json() == []  # nothing yet

    panel.deploy.deploy_button.click()  # returns once the model runs (it waits while the model starts)
    assert panel.deploy.deploy_button.description == "Deploy live"
    assert panel.status_text == "\u2714 Deployed ticker version 1: running.", panel.status_text
    model_id = panel.deploy.model_id
    card = panel.deploy.card.value
    assert panel.deploy.bar.layout.display != "none" and "ticker" in card and "Personal" in card
    assert "running" in card and model_id not in card  # names, not hex ids
    assert "%blankly" not in results_html(panel)  # Logs and Stop are the buttons below, not commands
    assert not panel.deploy.stop_button.disabled
    state = local_server.request("GET", "/model/deployment", params={"modelId": model_id}).json()
    assert state["state"] == "running"

    panel.logs.logs_button.click()  # opens the box and follows the log
    assert panel.logs.logs_button.description == "Hide logs"
    wait_for(lambda: "ticker model up" in panel.logs.text, "the live model's log in the panel", timeout=120)
    assert "ticker model up" in panel.logs.box.value
    panel.deploy.stop_button.click()
    assert panel.status_text == "\u2714 Model ticker: stopped.", panel.status_text
    assert "stopped" in panel.deploy.card.value and panel.deploy.stop_button.disabled  # nothing left to stop
    state = local_server.request("GET", "/model/deployment", params={"modelId": model_id}).json()
    assert state["state"] == "stopped"
    assert buttons_enabled(panel)

    panel.sign_in.sign_out_button.click()  # what was deployed belonged to that session: its card goes
    assert panel.deploy.bar.layout.display == "none" and panel.logs.area.layout.display == "none"
    assert panel.deploy.model_id is None


@pytest.mark.blankly  # the model's requirements name blankly: its environment is the server's own only where it installs
def test_the_deployment_card_follows_a_crashing_model_with_its_error_until_it_is_stopped(
        make_panel, local_server, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "keyless" / "keyless.ipynb", [
        "#| blankly\nimport time\ntime.sleep(1)  # each start lives a moment: the deploy sees it restarting\n"
        "raise RuntimeError('this exchange has no keys: it cannot trade live')\n"])
    panel = make_panel(notebook, confirm_seconds=30)
    sign_in_with_form(panel, local_server)
    panel.target.mode.value = "live"
    panel.deploy.deploy_button.click()
    panel.deploy.deploy_button.click()
    assert panel.status_text.startswith("\u2714 Deployed keyless version 1: starting"), panel.status_text
    error = "RuntimeError: this exchange has no keys: it cannot trade live"
    # Restarting after the crash: the card says why, on its own (no click), and Stop can still stop it.
    wait_for(lambda: error in panel.deploy.card.value, "the crash's error line on the card", timeout=60)
    assert "restarts: " in panel.deploy.card.value and not panel.deploy.stop_button.disabled
    panel.deploy.stop_button.click()
    card = panel.deploy.card.value
    assert "stopped" in card and "starting" not in card, card
    assert panel.deploy.stop_button.disabled and panel.status_text == "\u2714 Model keyless: stopped."


def test_the_confirmation_expires(make_panel, local_server) -> None:
    panel = make_panel(confirm_seconds=0.2)
    sign_in_with_form(panel, local_server)
    panel.target.mode.value = "live"

    panel.deploy.deploy_button.click()
    assert panel.deploy.deploy_button.description == "Confirm deploy live"
    wait_for(lambda: panel.deploy.deploy_button.description == "Deploy live", "the confirmation to expire", timeout=30)

    panel.deploy.deploy_button.click()  # a fresh first click: asks again, deploys nothing
    assert panel.deploy.deploy_button.description == "Confirm deploy live"
    user_id = local_server.user_id("alice")
    assert local_server.request("POST", "/model/list", data={"projectId": user_id}).json() == []


# ---------------------------------------------------------------- errors stay in the panel


def test_not_signed_in_is_one_line_and_nothing_is_raised(make_panel) -> None:
    panel = make_panel()

    panel.backtest.backtest_button.click()

    assert panel.status_text.startswith("\u2716 Not signed in")
    assert isinstance(panel.last_error, PanelError) and buttons_enabled(panel)


def test_a_refused_token_is_one_line_without_the_token(make_panel, local_server) -> None:
    panel = make_panel()
    panel.sign_in.local_checkbox.value = False
    panel.sign_in.url_input.value = local_server.url
    wrong = "not-a-token-" + "x" * 40
    panel.sign_in.token_input.value = wrong

    panel.sign_in.sign_in_button.click()

    assert panel.status_text.startswith("\u2716 ") and "refused" in panel.status_text
    assert session.current() is None and panel.sign_in.sign_in_form.layout.display != "none"
    assert_clean(panel, wrong)


def test_a_missing_token_says_where_to_put_it(make_panel, local_server) -> None:
    panel = make_panel()
    panel.sign_in.local_checkbox.value = False
    panel.sign_in.url_input.value = local_server.url

    panel.sign_in.sign_in_button.click()

    assert "Paste your refresh token in the Token field" in panel.status_text


def test_server_down_is_one_line_and_the_panel_recovers(make_panel, local_server) -> None:
    panel = make_panel()
    token = sign_in_with_form(panel, local_server)
    local_server.stop()

    panel.backtest.backtest_button.click()

    line = panel.status_text
    assert line.startswith("\u2716 ") and "\n" not in line
    assert local_server.url.split("//")[1] in line or "connect" in line.lower(), line
    assert buttons_enabled(panel) and panel.progress.layout.display == "none"
    assert_clean(panel, token)


def test_bad_balances_are_caught_before_anything_is_uploaded(make_panel, local_server) -> None:
    panel = make_panel()
    sign_in_with_form(panel, local_server)
    panel.backtest.initial_input.value = "USD10000"

    panel.backtest.backtest_button.click()

    assert panel.status_text == (
        "\u2716 initial balance 'USD10000' is not ASSET=AMOUNT: write e.g. USD=10000 (several: USD=10000, BTC=0.5)")
    panel.backtest.initial_input.value = "USD=10000"
    panel.backtest.start_input.value = "2010-06-01"  # and no end
    panel.backtest.backtest_button.click()
    assert "backtest period: give both a start and an end date" in panel.status_text
    assert isinstance(panel.last_error, BacktestArgsError) and buttons_enabled(panel)
    user_id = local_server.user_id("alice")
    assert local_server.request("POST", "/model/list", data={"projectId": user_id}).json() == []


def test_sign_out_shows_the_form_again(make_panel, local_server) -> None:
    panel = make_panel()
    sign_in_with_form(panel, local_server)

    panel.sign_in.sign_out_button.click()

    assert session.current() is None
    assert panel.sign_in.sign_in_form.layout.display != "none" and panel.sign_in.signed_in_box.layout.display == "none"
    assert "Not signed in" in panel.status_text


# ---------------------------------------------------------------- in a real shell, on a real thread


@pytest.fixture
def kernel_shell() -> Iterator[Any]:
    """A real shell that is also ``get_ipython()``, as a kernel's is: display() goes through it."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from ..magics_shell import TestingShell

    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryAccessor.enabled = False  # no SQLite history file
    shell = TestingShell.instance(config=config)
    shell.displayhook.flush = lambda: None  # IPython's gc.collect() there can hang at exit
    yield shell
    TestingShell.clear_instance()


def test_blankly_panel_magic_shows_it_once_and_works_off_the_main_thread(
    rsi_notebook, local_server, monkeypatch, kernel_shell
) -> None:
    from IPython.utils.capture import capture_output

    shell = kernel_shell
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", local_server.refresh_token("alice"))
    session.sign_in(local_server.url)
    plans = list(local_server.request("POST", "/project/plans", data={"type": "backtesting"}).json())
    shell.run_cell("%load_ext blankly_magics", store_history=True)
    # The panel follows the magics' settings.
    shell.run_cell(f"%config BlanklyMagics.notebook = {str(rsi_notebook)!r}", store_history=True)
    shell.run_cell(f"%config BlanklyMagics.plan_backtest = {plans[-1]!r}", store_history=True)
    shell.run_cell("%config BlanklyMagics.python = '3.10'", store_history=True)

    with capture_output() as captured:
        shell.run_cell("%blankly panel", store_history=True)

    panel = shell.user_ns["_"] if isinstance(shell.user_ns.get("_"), BlanklyPanel) else None
    assert panel is not None
    try:
        assert len(captured.outputs) == 1  # the widget, once; no Out[] repr after it
        assert "application/vnd.jupyter.widget-view+json" in captured.outputs[0].data
        assert "BlanklyPanel" not in captured.stdout
        assert panel.notebook == rsi_notebook.resolve()
        # The pickers fill on the panel's own thread; the shell was free at once.
        wait_for(lambda: panel.status_text == "\u2714 Ready.", "the panel to load its pickers", timeout=60)
        assert panel.target.project_dd.value == local_server.user_id("alice")
        assert panel.target.plan_dd.value == plans[-1] and panel.target.python_dd.value == "3.10"
        panel.cells.preview_button.click()
        wait_for(lambda: "Preview" in panel.status_text, "the preview", timeout=60)
        assert "3 cell(s) taken" in results_html(panel)
    finally:
        panel.close()


PANEL_ORDERS = {
    # blankly_magics.panel is a function until the submodule is imported; then the import
    # system puts the module in its place, which must be callable too. Each order runs in a
    # fresh interpreter, so no earlier test's imports can hide a failure.
    "function first": """
        assert "blankly_magics.panel" not in sys.modules
        shown.append(blankly_magics.panel(notebook=NB))
        import blankly_magics.panel
        shown.append(blankly_magics.panel(notebook=NB))
    """,
    "module first": """
        import blankly_magics.panel
        shown.append(blankly_magics.panel(notebook=NB))
        from blankly_magics import panel
        shown.append(panel(notebook=NB))
    """,
    "magic first": """
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "blankly_magics")
        ip.run_line_magic("config", f"BlanklyMagics.notebook = {NB!r}")
        shown.append(ip.run_line_magic("blankly", "panel"))
        shown.append(blankly_magics.panel(notebook=NB))
    """,
}


@pytest.mark.parametrize("order", list(PANEL_ORDERS))
def test_blankly_magics_panel_works_in_any_import_order(order, rsi_notebook, tmp_path) -> None:
    script = "import sys\nimport blankly_magics\nNB = sys.argv[1]\nshown = []\n" + textwrap.dedent(
        PANEL_ORDERS[order]) + textwrap.dedent("""
        for panel in shown:
            print("PANEL", type(panel).__name__, panel.notebook, panel.status_text, sep="|")
            panel.close()
    """)
    env = dict(os.environ, HOME=str(tmp_path / "home"), IPYTHONDIR=str(tmp_path / "ipython"))
    proc = subprocess.run([sys.executable, "-c", script, str(rsi_notebook)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)

    assert proc.returncode == 0, proc.stderr[-3000:]
    panels = [line.split("|")[1:] for line in proc.stdout.splitlines() if line.startswith("PANEL|")]
    assert len(panels) == 2
    for kind, notebook, status in panels:
        assert (kind, notebook) == ("BlanklyPanel", str(rsi_notebook.resolve()))
        assert status.startswith("Not signed in")
