"""Bad input on the notebook side: one clear line for the user, and nothing reaches the server.

Complements tests/magics/test_magics.py (option errors before any sign-in, a dry-run undefined
name), tests/test_export.py (read_notebook's errors) and tests/test_client.py (scripted
servers): here every bad notebook, strategy or option is tried by a user who IS signed in
to a real server, and the server must hold nothing afterwards; bad server URLs are tried
from each place a URL can come from; and a real server behind a proxy that turns into an
HTML error page, or answers nothing, is met at sign-in and in the middle of a session.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.fixtures_notebooks import RSI_ENTRY, write_notebook
from tests.fixtures_server import ServerHandle
from tests.reliability import record
from tests.server.test_faults import fault_proxy  # noqa: F401 (fixture)
from tests.magics_shell import Cells

BACKTEST = "%%blankly_deploy --backtest --notebook {nb} --initial USD=10000 --start 2010-06-01 --end 2013-03-01"


def _notebooks(folder: Path) -> dict[str, Path]:
    """Each bad notebook file a user can end up with, by what is wrong with it."""
    files = {
        "not JSON": ("raw", "{'cells': [this is not json"),
        "an empty file": ("raw", ""),
        "JSON but not a notebook": ("raw", json.dumps({"hello": "world"})),
        "a JSON list": ("raw", json.dumps([1, 2, 3])),
        "no code cells": ("cells", [{"cell_type": "markdown", "source": "# my strategy, not saved yet"}]),
        "a syntax error": ("cells", ["#| blankly\nimport blankly\n", "#| blankly\ndef price_event(price, symbol, state:\n    pass\n"]),
        "an undefined name": ("cells", ["#| blankly\nimport blankly\n", "#| blankly\nstrategy = blankly.Strategy(exchange)\n"]),
    }
    folder.mkdir()
    out = {}
    for what, (kind, content) in files.items():
        path = folder / f"{what.replace(' ', '-')}.ipynb"
        if kind == "raw":
            path.write_text(content)
        else:
            write_notebook(path, content)
        out[what] = path
    return out


BAD_NOTEBOOKS = {
    "not JSON": "is not valid JSON",
    "an empty file": "is not valid JSON",
    "JSON but not a notebook": "is JSON but not a Jupyter notebook (it has no 'cells')",
    "a JSON list": "is JSON but not a Jupyter notebook",
    "no code cells": "it has no code cells: add your strategy's cells and save it",
    "a syntax error": "cell 2 (`def price_event(price, symbol, state:`), line 2: syntax error",
    "an undefined name": "`exchange` is used but never defined or imported anywhere in the notebook",
}


@pytest.fixture
def kernel_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kernel's temp folder, where an upload's zip is written: it must be left empty."""
    folder = tmp_path / "kernel-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_bad_notebooks_and_options_are_one_line_and_nothing_reaches_the_server(
    cells: Cells, alice: ServerHandle, rsi_notebook: Path, tmp_path: Path, kernel_tmp: Path  # noqa: F811
) -> None:
    before = alice.snapshot()
    notebooks = _notebooks(tmp_path / "bad")
    tried = 0
    for what, expected in BAD_NOTEBOOKS.items():
        for mode in ("--backtest", ""):  # a backtest and a live deploy alike
            message = cells.fails(f"%%blankly_deploy {mode} --notebook {notebooks[what]}\nstrategy.start()")
            assert expected in message, (what, message)
            tried += 1
    assert "syntax error" in cells.fails(f"%%blankly_deploy --notebook {notebooks['a syntax error']}\nstrategy.start()")

    plans = ", ".join(alice.request("POST", "/project/plans", data={"type": "backtesting"}).json())
    options = {
        "--args '{\"to\": 1y'": "--args is not valid JSON",
        "--args '\"1y\"'": "--args must be a JSON object",
        "--plan huge": f"unknown backtesting plan 'huge'; the server offers: {plans}",
        "--python 3.4": "this server cannot run Python 3.4",
        "--python 2.7": "--python takes a version like 3.11, not '2.7'",
        "--python 3.99": "this server cannot run Python 3.99",
        "--project 'no such project'": "no project 'no such project'; your projects: Personal (",
        "--model 'no such model'": "no model 'no such model' in your projects",
    }
    for option, expected in options.items():
        message = cells.fails(f"{BACKTEST.format(nb=rsi_notebook)} {option}\n{RSI_ENTRY}")
        assert expected in message, (option, message)
        tried += 1
    assert before.diff(alice.snapshot()) == {}, "a refused cell stored something on the server"
    assert not list(kernel_tmp.iterdir()), "a refused cell left its zip in the kernel's temp folder"
    record("bad input", "bad notebooks, strategies and %%blankly_deploy options, signed in to a real server",
           what="one UsageError line naming the problem; nothing stored on the server; no zip left behind",
           cases=tried + 1)


@pytest.mark.parametrize("url", [
    "localhost:8000", "127.0.0.1", "http://", "file:///etc/passwd", "javascript:alert(1)", "ws://127.0.0.1:1",
])
def test_a_server_url_that_is_not_http_is_refused_from_every_source(
    cells: Cells, monkeypatch: pytest.MonkeyPatch, url: str  # noqa: F811
) -> None:
    monkeypatch.setenv("SOME_TOKEN", "rt-not-used")
    from_option = cells.fails(f"%blankly_login --url '{url}' --token-env SOME_TOKEN")
    monkeypatch.setenv("BLANKLY_DEPLOY_URL", url)
    from_env = cells.fails("%blankly_login --token-env SOME_TOKEN")
    monkeypatch.delenv("BLANKLY_DEPLOY_URL")
    cells.run(f"%config BlanklyMagics.url = {url!r}")
    from_config = cells.fails("%blankly_login --token-env SOME_TOKEN")
    for message in (from_option, from_env, from_config):
        assert message.startswith(f"not a deployment server URL: {url!r}; give an http:// or https:// URL"), message
    assert cells.fails("%blankly projects") == "not signed in: run %blankly_login first"


def test_a_password_in_the_server_url_is_refused_without_showing_it(cells: Cells, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("SOME_TOKEN", "rt-not-used")
    message = cells.fails("%blankly_login --url http://ann:hunter2secret@127.0.0.1:9 --token-env SOME_TOKEN")
    assert "must not carry a user or password" in message and "hunter2secret" not in message
    assert all("hunter2secret" not in seen for seen in cells.seen)


def test_a_server_answering_html_or_nothing_is_one_line_at_sign_in_and_mid_session(
    cells: Cells, local_server: ServerHandle, fault_proxy, rsi_notebook: Path, monkeypatch, kernel_tmp  # noqa: F811
) -> None:
    proxy = fault_proxy(local_server)
    token = local_server.refresh_token("alice")
    cells.secrets.add(token)
    monkeypatch.setenv("ALICE_TOKEN", token)
    login = f"%blankly_login --url {proxy.url} --token-env ALICE_TOKEN"

    proxy.set_mode("html502")
    message = cells.fails(login)
    assert "answered with something that is not JSON (text/html): 502 Bad Gateway" in message, message
    proxy.set_mode("silent")
    message = cells.fails(login)
    assert message.startswith(f"lost the connection to the deployment server at {proxy.url}"), message
    assert cells.fails("%blankly projects") == "not signed in: run %blankly_login first"

    proxy.set_mode("pass")
    assert cells.run(login) == f"Signed in to {proxy.url} as alice\n"
    before = local_server.snapshot()
    proxy.set_mode("html502")  # a proxy in front of a server that went away
    message = cells.fails(f"{BACKTEST.format(nb=rsi_notebook)}\n{RSI_ENTRY}")
    assert "not JSON (text/html): 502 Bad Gateway" in message, message
    message = cells.fails("%blankly models")  # a read: retried with backoff first, then one line
    assert "not JSON (text/html): 502 Bad Gateway" in message and "/project/list" in message, message
    assert proxy.seen.count("html502") >= 1 + 1 + 4
    assert before.diff(local_server.snapshot()) == {}
    assert not list(kernel_tmp.iterdir())

    proxy.set_mode("pass")  # the proxy is back: the same session simply goes on
    assert "Personal" in cells.run("%blankly projects")
    record("bad input", "a server (or proxy) answering HTML pages or nothing, at sign-in and mid-session",
           what="one line naming what came back; not signed in / nothing stored; the session recovers",
           cases=5)
