"""The panel in a real JupyterLab, driven by Debian's Chromium through Playwright.

A notebook holding the RSI strategy, ``%blankly_login`` (the embedded local
server) and ``%blankly panel`` is opened and run like a user would; the test
clicks Backtest and waits for the metrics to appear inside the panel, then
saves a screenshot of the panel to test-artifacts/panel.png.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from blankly_magics.export import manifest
from tests.benchmarks.harness import stop_process
from tests.fixtures_notebooks import PRICES_CSV, REPO, rsi_cells, write_notebook
from tests.fixtures_server import wait_for
from tests.fixtures_home import free_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACT = REPO / "test-artifacts" / "panel.png"
# Environment that would point the kernel at another server or notebook than the test's own.
FOREIGN_ENV = ("BLANKLY_DEPLOY_URL", "BLANKLY_REFRESH_TOKEN", "BLANKLY_NOTEBOOK_PATH", "JPY_SESSION_NAME")


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    home: Path
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _get(url: str, timeout: float = 2.0) -> bytes:
    # Loopback only: no proxy from the environment may intercept it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as reply:
        return reply.read()


def _stop_embedded_servers(home: Path) -> None:
    """Stop every deployment server the kernel started under the test's data home."""
    import psutil

    from blankly_magics import embedded

    for info_file in home.rglob("server.json"):
        data_dir = info_file.parent
        try:
            embedded.stop_local_server(data_dir)
        except Exception:  # noqa: BLE001 - fall back to the recorded pid below
            pass
        try:
            pid = json.loads(info_file.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            continue
        try:
            process = psutil.Process(int(pid))
            for child in process.children(recursive=True):
                child.kill()
            process.kill()
        except psutil.Error:
            pass


def panel_notebook_cells() -> list:
    """The RSI strategy, then sign-in to the embedded server, then the panel."""
    return rsi_cells() + ["%load_ext blankly_magics\n%blankly_login", "%blankly panel"]


@contextmanager
def running_lab(tmp_path: Path, cells: list) -> Iterator[Lab]:
    """A real JupyterLab on a free loopback port, its root holding strategy.ipynb (``cells``),
    the prices and Blankly's settings; stopped with its kernels and their embedded servers."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")
    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    shutil.copy(PRICES_CSV, root / PRICES_CSV.name)
    # Blankly reads these from the working directory when the strategy cell runs in the kernel.
    (root / "settings.json").write_bytes(manifest.default_settings_bytes())
    (root / "backtest.json").write_bytes(manifest.default_backtest_bytes())
    write_notebook(root / "strategy.ipynb", cells)

    # No "news" toast over the panel: JupyterLab reads user settings from this dir.
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')

    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(settings.parent.parent),
        BLANKLY_MAGICS_HOME=str(home),  # kernels inherit it: the embedded server's data stays in tmp
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),  # the Blankly CLI's auth.json too
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        MPLBACKEND="Agg",
    )
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the test
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, home, log)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited with {proc.returncode}:\n{lab.log_tail()}")
        try:
            return b"started" in _get(f"{lab.url}/api/status?token={token}")
        except OSError:
            return False

    try:
        wait_for(up, "JupyterLab to answer", timeout=120, poll=0.25)
        yield lab
    finally:
        stop_process(proc, grace=20.0)  # the server's shutdown also ends its kernels
        _stop_embedded_servers(home)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with running_lab(tmp_path, panel_notebook_cells()) as running:
        yield running


@contextmanager
def chromium(artifact: Path) -> Iterator[object]:
    """A page in headless Chromium; on a failure, a screenshot of it beside ``artifact``."""
    from playwright.sync_api import sync_playwright

    artifact.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 2400})
        page.set_default_timeout(120_000)
        try:
            yield page
        except BaseException:
            # What the page looked like, for whoever reads the failure.
            page.screenshot(path=str(artifact.with_name(artifact.stem + "-failed-page.png")))
            raise
        finally:
            browser.close()


def open_panel(page, lab: Lab) -> object:
    """Open strategy.ipynb, run all its cells, wait for the panel to be ready; the panel's locator."""
    page.goto(f"{lab.url}/lab/tree/strategy.ipynb?token={lab.token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    # The status bar reads "Python 3 (ipykernel) | Idle" once the kernel is up (the
    # toolbar's indicator says idle earlier, before any kernel exists).
    page.wait_for_function(
        "() => { const s = document.querySelector('#jp-main-statusbar');"
        " return s && /ipykernel\\)?\\s*\\|\\s*Idle/.test(s.textContent); }"
    )
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    panel = page.locator(".blankly-panel")
    panel.wait_for(state="visible")
    # Signed in by %blankly_login; the pickers are filled on the panel's thread.
    page.wait_for_function(
        "() => { const s = document.querySelector('.blankly-panel-status');"
        " return s && /Ready/.test(s.textContent); }"
    )
    return panel


def test_panel_backtest_in_jupyterlab(lab: Lab) -> None:
    with chromium(ARTIFACT) as page:
        run_panel_backtest(page, lab)


def run_panel_backtest(page, lab: Lab) -> None:
    panel = open_panel(page, lab)
    status = panel.locator(".blankly-panel-status")
    panel.locator(".blankly-panel-preview").click()  # builds, uploads nothing: no upload bar
    page.wait_for_function("() => /Preview: .* nothing uploaded/.test("
                           "document.querySelector('.blankly-panel-status').textContent)")
    assert not panel.locator(".blankly-panel-upload").is_visible()
    panel.locator(".blankly-panel-start input").fill("2010-06-01")
    panel.locator(".blankly-panel-end input").fill("2013-03-01")
    panel.locator(".blankly-panel-initial input").fill("USD=10000")
    panel.locator(".blankly-panel-backtest").click()

    results = panel.locator(".blankly-panel-results")
    try:
        results.get_by_text("Sharpe Ratio").first.wait_for(state="visible", timeout=180_000)
    except Exception:
        raise AssertionError(f"no metrics in the panel; its status reads {status.inner_text()!r}") from None
    assert "completed" in status.inner_text()
    assert not panel.locator(".blankly-panel-upload").is_visible()  # the upload is over
    assert panel.locator(".blankly-panel-backtest").is_enabled()
    assert results.locator("img[alt='equity curve']").count() == 1

    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(ARTIFACT))
    assert ARTIFACT.stat().st_size > 10_000
