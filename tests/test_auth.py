"""Token sources, the Blankly CLI's token file, and the browser redirect capture (real HTTP)."""
from __future__ import annotations

import json
import socket
import stat
import threading

import pytest
import requests

from blankly_magics import auth
from blankly_magics.auth import SignInError
from tests.fixtures_home import free_port

TOKEN = "rt_SECRET-value_0123456789abcdef"


pytestmark = pytest.mark.usefixtures("private_home")  # tests/fixtures_home.py


def no_prompt(text: str) -> str:
    raise AssertionError("the prompt must not be used when another source has a token")


# ---- the token file ---------------------------------------------------------------------


@pytest.mark.blankly
def test_token_file_is_the_blankly_cli_file(private_home):
    from blankly.deployment import login as blankly_login

    assert auth.token_file() == blankly_login.get_token_file()
    assert auth.token_file() == private_home / ".local/share/blankly/auth.json"


@pytest.mark.blankly
def test_blankly_cli_and_we_read_each_others_token(private_home):
    from blankly.deployment import login as blankly_login

    blankly_login.write_token("written-by-the-cli")
    assert auth.read_saved_token() == "written-by-the-cli"
    auth.save_token(TOKEN)
    assert blankly_login.get_token() == TOKEN


def test_saved_token_is_owner_only_and_keeps_other_keys(private_home):
    path = auth.token_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"token": "old", "team": "quant"}))
    path.chmod(0o644)  # what the CLI leaves with a usual umask
    assert auth.save_token(TOKEN) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"token": TOKEN, "team": "quant"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["auth.json"]  # no temp file left


def test_new_token_file_is_created_owner_only(private_home):
    path = auth.save_token(TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"token": TOKEN}


def test_forget_token_removes_the_file_or_just_the_token():
    path = auth.save_token(TOKEN)
    assert auth.forget_token() is True
    assert not path.exists()
    assert auth.forget_token() is False
    path.write_text(json.dumps({"token": TOKEN, "team": "quant"}))
    assert auth.forget_token() is True
    assert json.loads(path.read_text()) == {"team": "quant"}
    assert auth.read_saved_token() is None


def test_a_damaged_token_file_is_named_with_the_fix():
    path = auth.token_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(SignInError) as caught:
        auth.read_saved_token()
    assert str(path) in str(caught.value) and "delete it" in str(caught.value)
    auth.save_token(TOKEN)  # signing in again repairs it
    assert auth.read_saved_token() == TOKEN


# ---- token sources, in order -------------------------------------------------------------


def test_token_env_comes_first(monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "from-my-var")
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", "from-blankly-var")
    auth.save_token("from-file")
    assert auth.resolve_refresh_token("MY_TOKEN", no_prompt) == ("from-my-var", "$MY_TOKEN")


def test_a_named_variable_that_is_unset_is_an_error(monkeypatch):
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", "from-blankly-var")
    with pytest.raises(SignInError, match="MY_TOKEN is not set"):
        auth.resolve_refresh_token("MY_TOKEN", no_prompt)


def test_blankly_refresh_token_comes_before_the_file(monkeypatch):
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", " from-blankly-var\n")
    auth.save_token("from-file")
    assert auth.resolve_refresh_token(None, no_prompt) == ("from-blankly-var", "$BLANKLY_REFRESH_TOKEN")


def test_the_file_comes_before_the_prompt():
    auth.save_token("from-file")
    assert auth.resolve_refresh_token(None, no_prompt) == ("from-file", str(auth.token_file()))


def test_the_prompt_is_last_and_takes_a_pasted_redirect_url():
    asked = []

    def prompt(text):
        asked.append(text)
        return f"http://localhost:9082/?token={TOKEN}"

    assert auth.resolve_refresh_token(None, prompt) == (TOKEN, "prompt")
    assert asked and "hidden" in asked[0]


def test_an_empty_answer_at_the_prompt_says_where_else_a_token_can_come_from():
    with pytest.raises(SignInError, match="BLANKLY_REFRESH_TOKEN"):
        auth.resolve_refresh_token(None, lambda text: "  ")


def test_a_token_with_spaces_is_refused():
    with pytest.raises(SignInError, match="not a refresh token"):
        auth.clean_token("two words")


# ---- the browser redirect ----------------------------------------------------------------


def _capture_in_thread(port, timeout=30.0):
    ready = threading.Event()
    result = {}
    addresses = []

    def run():
        try:
            result["token"] = auth.capture_browser_token(
                port=port, timeout=timeout, on_ready=lambda address: (addresses.append(address), ready.set())
            )
        except Exception as exc:  # handed to the test
            result["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread, result, addresses


def test_browser_redirect_is_captured_and_answered_with_a_close_page(capfd):
    port = free_port()
    thread, result, addresses = _capture_in_thread(port)
    assert addresses == [f"http://localhost:{port}/"]
    stray = requests.get(f"http://127.0.0.1:{port}/favicon.ico", timeout=5)
    assert stray.status_code == 404  # not the redirect: keep waiting
    answer = requests.get(f"http://127.0.0.1:{port}/", params={"token": TOKEN}, timeout=5)
    thread.join(10)
    assert result == {"token": TOKEN}
    assert answer.status_code == 200 and "close this tab" in answer.text
    assert TOKEN not in answer.text
    out, err = capfd.readouterr()
    assert TOKEN not in out + err  # http.server's request log would print it


def test_browser_capture_gives_none_when_no_redirect_comes():
    assert auth.capture_browser_token(port=free_port(), timeout=0.3) is None


def test_browser_capture_on_a_busy_port_says_what_to_do():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SignInError) as caught:
            auth.capture_browser_token(port=port, timeout=5)
    assert f"127.0.0.1:{port}" in str(caught.value) and "prompt" in str(caught.value)
