"""Deploying live from the panel in a real JupyterLab (Chromium through Playwright).

A model that crashes at once (a keyless exchange cannot trade live): the deployment's
card goes from starting to crashed, with the error line, on its own, and Stop is
disabled. The same model deployed again as a ticker: running, its log box scrolled to
its last line and following, then Stop: stopped, Stop disabled. A screenshot of the
panel goes to test-artifacts/panel-live.png.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.fixtures_notebooks import REPO
from tests.test_panel_browser import Lab, chromium, open_panel, running_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACT = REPO / "test-artifacts" / "panel-live.png"
CRASH = "raise RuntimeError('this exchange has no keys: it cannot trade live')"
TICKER = "for n in range(1000000):\n    print(f'tick {n}', flush=True)\n    time.sleep(0.02)"
ERROR = "RuntimeError: this exchange has no keys: it cannot trade live"
# The log box's last line is in view, at its bottom, and the box is scrolled (its first line is not).
AT_THE_END = """() => {
    const box = document.querySelector('.blankly-log-box'), lines = box && box.querySelector('pre');
    if (!lines || lines.scrollHeight <= box.clientHeight) return false;
    const b = box.getBoundingClientRect(), l = lines.getBoundingClientRect();
    return Math.abs(l.bottom - b.bottom) <= 4 && l.top < b.top - 20;
}"""


def expect(locator):
    """Playwright's expect, imported when a browser test runs (the fast suite's Pythons lack it)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def live_lab(tmp_path: Path) -> Iterator[Lab]:
    cells = ["#| blankly\nimport time\n", "%load_ext blankly_magics\n%blankly_login", "%blankly panel"]
    with running_lab(tmp_path, cells) as lab:
        yield lab


def card_state(page) -> str:
    return page.evaluate("() => { const c = document.querySelector('.blankly-deployment-card');"
                         " return c ? c.dataset.state : ''; }")


def deploy(panel, page, entry: str) -> None:
    panel.locator(".blankly-panel-entry textarea").fill(entry)
    panel.locator(".blankly-panel-deploy").click()
    panel.locator(".blankly-panel-deploy", has_text="Confirm deploy live").click()
    page.wait_for_function("() => /Deployed /.test(document.querySelector('.blankly-panel-status').textContent)")


def test_the_deployment_card_follows_the_model_and_the_log_shows_its_newest_lines(live_lab: Lab) -> None:
    with chromium(ARTIFACT) as page:
        panel = open_panel(page, live_lab)
        panel.locator(".blankly-panel-mode button", has_text="Deploy live").click()

        deploy(panel, page, CRASH)
        card, stop = panel.locator(".blankly-deployment-card"), panel.locator(".blankly-panel-stop")
        assert card_state(page) == "starting"  # restarting after its first crash
        page.wait_for_function("() => document.querySelector('.blankly-deployment-card').dataset.state"
                               " === 'crashed'", timeout=180_000)  # after its restarts, with no click
        assert ERROR in card.inner_text() and card.inner_text().startswith("strategy in Personal")
        expect(stop).to_be_disabled()  # nothing runs: nothing to stop

        deploy(panel, page, TICKER)  # a new version of the same model
        assert card_state(page) == "running" and "version 2" in card.inner_text()
        expect(stop).to_be_enabled()
        panel.locator(".blankly-panel-logs").click()
        page.wait_for_function(AT_THE_END, timeout=60_000)  # the newest lines, in view
        first = panel.locator(".blankly-log-box pre").inner_text().strip().splitlines()[-1]
        page.wait_for_function(  # still following: newer lines come, and the box stays at its end
            "(first) => { const pre = document.querySelector('.blankly-log-box pre');"
            " return pre.textContent.trim().split('\\n').pop() !== first; }", arg=first, timeout=30_000)
        assert page.evaluate(AT_THE_END)

        stop.click()
        page.wait_for_function("() => document.querySelector('.blankly-deployment-card').dataset.state"
                               " === 'stopped'")
        expect(stop).to_be_disabled()
        assert "stopped" in panel.locator(".blankly-panel-status").inner_text()
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=str(ARTIFACT))
