"""The panel's Exchange keys box and its Activity view, clicked without a browser against the real server.

Keys typed into password boxes are stored and the boxes emptied at the click; the
listing shows names only. The Activity view follows the model the panel deployed and
refreshes by itself while shown; the model reports its orders through Blankly's
reporter (the platform hook) as Blankly's strategy logger does.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..fixtures_notebooks import write_notebook
from ..fixtures_panel import sign_in_with_form
from ..fixtures_server import wait_for
from .test_panel import everything_shown

pytestmark = pytest.mark.usefixtures("panel_home")

TYPED = {"API_KEY": "panelTypedKeyZ9Y8X7W6", "API_SECRET": "panelTypedSecretV5U4T3S2"}
REPORTER = '''#| blankly
import time

import blankly

n = 0
while True:  # what Blankly's strategy logger reports of each order, through Blankly's reporter (the hook)
    n += 1
    blankly.reporter.log_market_order({"symbol": "GOOG-USD", "exchange": "replay", "size": 1, "id": "order-%d" % n,
                                       "side": "buy" if n % 2 else "sell"}, "replay")
    blankly.reporter.update_order({"id": "order-%d" % n, "status": "done", "price": 500.0 + n}, "replay")
    time.sleep(0.3)
'''


def test_keys_typed_in_the_panel_are_stored_listed_by_name_and_never_kept(make_panel, local_server) -> None:
    panel = make_panel()
    assert "Sign in to see the exchange keys" in panel.keys.listing.value
    sign_in_with_form(panel, local_server)
    assert "No exchange keys stored" in panel.keys.listing.value

    panel.keys.store_button.click()  # no portfolio named: nothing is sent
    assert panel.status_text.startswith("\u2716 Name the portfolio the keys are for"), panel.status_text
    keys = panel.keys
    keys.exchange.value = "alpaca"
    keys.portfolio.value = "main"
    keys.sandbox.value = True
    for name, box in keys.inputs.items():
        box.value = TYPED[name]
    keys.store_button.click()
    assert panel.status_text == "\u2714 Stored on the server from what you typed: alpaca/main.", panel.status_text
    assert all(box.value == "" for box in keys.inputs.values())  # emptied at the click
    assert "alpaca" in keys.listing.value and "API_KEY, API_SECRET, sandbox" in keys.listing.value
    stored = local_server.request("GET", "/keys/list").json()["keys"]
    assert [(k["exchange"], k["portfolio"], k["sandbox"]) for k in stored] == [("alpaca", "main", True)]
    shown = everything_shown(panel) + panel.status.value
    assert not any(value in shown for value in TYPED.values())

    keys.exchange.value = "coinbase_pro"  # each exchange asks for its own fields
    assert list(keys.inputs) == ["API_KEY", "API_SECRET", "API_PASS"]
    assert keys.stored.options == (("alpaca/main", ("alpaca", "main")),)
    keys.delete_button.click()
    assert panel.status_text == "\u2714 Deleted from the server: alpaca/main.", panel.status_text
    assert local_server.request("GET", "/keys/list").json() == {"keys": []}
    assert "No exchange keys stored" in keys.listing.value


@pytest.mark.blankly
def test_the_activity_view_follows_the_deployed_model_and_refreshes_while_shown(
        make_panel, local_server, tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "live" / "reporter.ipynb", [REPORTER])
    panel = make_panel(notebook)
    panel.activity.period = 0.3
    sign_in_with_form(panel, local_server)
    assert panel.activity.area.layout.display == "none"  # nothing deployed from this panel yet
    panel.target.mode.value = "live"
    panel.deploy.deploy_button.click()
    panel.deploy.deploy_button.click()
    assert panel.status_text.startswith("\u2714 Deployed reporter version 1"), panel.status_text
    model_id = panel.deploy.model_id

    # The view's own timer: shown for the deployed model, its orders coming in by themselves.
    wait_for(lambda: panel.activity.model_id == model_id and "order-4" in panel.activity.view_html.value,
             "the deployed model's orders in the Activity view", timeout=120)
    assert panel.activity.area.layout.display != "none"
    html = panel.activity.view_html.value
    assert f"Activity of model {model_id}" in html and "GOOG-USD" in html and ">buy<" in html and ">sell<" in html
    seen = panel.activity.refreshes
    wait_for(lambda: panel.activity.refreshes >= seen + 2, "two more refreshes", timeout=60)
    assert all(button.disabled is False for button in panel.buttons())  # refreshing never blocks the panel
    orders = json.dumps(panel.activity.activity.order_list)
    assert '"side": "buy"' in orders and '"status": "done"' in orders

    panel.deploy.stop_button.click()
    panel.sign_in.sign_out_button.click()
    assert panel.activity.area.layout.display == "none" and panel.activity.model_id is None
