"""Signing in and out against the real server: token sources, the shared token file, the browser path."""
from __future__ import annotations

import json
import stat
import threading

import pytest
import requests

from blankly_magics import auth, session
from blankly_magics.client import DeploymentClient, DeploymentError
from blankly_magics.config import BlanklyConfig
from blankly_magics.embedded import stop_local_server
from blankly_magics.session import SignInError, current, sign_in, sign_out

from .fixtures_home import assert_not_in_environment, environment_writes, free_port

pytestmark = pytest.mark.usefixtures("private_home")


@pytest.fixture(autouse=True)
def signed_out(private_home, tmp_path):
    """Each test starts and ends signed out, with no server of its own left running."""
    yield
    sign_out(revoke=False)
    stop_local_server(tmp_path / "bm")


def refuse_prompt(text: str) -> str:
    raise AssertionError("no prompt expected")


def shown(value: object) -> str:
    return f"{value!r} {value}"


def test_no_url_signs_in_to_the_embedded_server(tmp_path):
    signed = sign_in(prompt=refuse_prompt)
    assert signed.local and signed.token_source == "local server"
    assert signed.url.startswith("http://127.0.0.1:") and signed.data_dir == (tmp_path / "bm").resolve()
    assert current() is signed
    assert signed.client.projects()[0]["projectId"] == signed.user_id
    token = (tmp_path / "bm" / "local-token").read_text()
    assert token not in shown(signed) + shown(signed.client)
    assert not auth.token_file().exists()  # a local token never replaces a Blankly login
    again = sign_in(prompt=refuse_prompt)
    assert again.url == signed.url and again.user_id == signed.user_id


def test_a_wiped_local_token_is_issued_again(tmp_path):
    first = sign_in()
    (tmp_path / "bm" / "local-token").write_text("a-token-this-server-never-issued")
    second = sign_in()
    assert second.user_id == first.user_id
    assert (tmp_path / "bm" / "local-token").read_text() != "a-token-this-server-never-issued"


def test_the_environment_token_signs_in_and_is_kept_for_the_blankly_cli(local_server, monkeypatch):
    token = local_server.refresh_token("alice")
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", token)
    signed = sign_in(local_server.url + "/", prompt=refuse_prompt)
    assert (signed.url, signed.local, signed.token_source) == (local_server.url, False, "$BLANKLY_REFRESH_TOKEN")
    assert signed.user_id == local_server.user_id("alice") and signed.user_name == "alice"
    path = auth.token_file()
    assert signed.token_file == path
    assert json.loads(path.read_text()) == {"token": token}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in shown(signed) + shown(signed.client) + shown(current())


def test_token_env_then_the_saved_file_then_the_prompt(local_server, monkeypatch):
    alice, bob, carol = (local_server.refresh_token(u) for u in ("alice", "bob", "carol"))
    monkeypatch.setenv("MY_DEPLOY_TOKEN", alice)
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", bob)
    first = sign_in(local_server.url, token_env="MY_DEPLOY_TOKEN", prompt=refuse_prompt)
    assert (first.token_source, first.user_name) == ("$MY_DEPLOY_TOKEN", "alice")

    monkeypatch.delenv("BLANKLY_REFRESH_TOKEN")
    saved = sign_in(local_server.url, prompt=refuse_prompt)  # alice's token, kept by the first sign-in
    assert (saved.token_source, saved.user_name) == (str(auth.token_file()), "alice")

    auth.forget_token()
    asked = []
    prompted = sign_in(local_server.url, prompt=lambda text: asked.append(text) or carol)
    assert (prompted.token_source, prompted.user_name) == ("prompt", "carol")
    assert len(asked) == 1 and carol not in asked[0]
    assert auth.read_saved_token() == carol


def test_a_token_handed_over_comes_first_and_never_enters_the_environment(local_server, monkeypatch):
    alice, bob, carol = (local_server.refresh_token(u) for u in ("alice", "bob", "carol"))
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", bob)
    auth.save_token(carol)
    with environment_writes() as writes:
        signed = sign_in(local_server.url, token=f" {alice}\n", browser=True, browser_port=free_port(),
                         browser_timeout=0.5, prompt=refuse_prompt)
    assert (signed.token_source, signed.user_name) == ("the sign-in form", "alice")
    assert_not_in_environment(alice, writes)
    assert signed.token_file == auth.token_file() and auth.read_saved_token() == alice  # kept like any other
    assert stat.S_IMODE(auth.token_file().stat().st_mode) == 0o600
    assert alice not in shown(signed) + shown(signed.client)

    dana = local_server.refresh_token("dana")  # the whole redirect address, pasted
    assert sign_in(local_server.url, token=f"http://localhost:9082/?token={dana}").user_name == "dana"

    with pytest.raises(SignInError, match="that is not a refresh token"):
        sign_in(local_server.url, token="   ", prompt=refuse_prompt)
    with pytest.raises(SignInError) as caught:
        sign_in(local_server.url, token="not-a-token-of-this-server", prompt=refuse_prompt)
    assert "refused the refresh token from the sign-in form" in str(caught.value)
    assert "not-a-token-of-this-server" not in str(caught.value)
    assert auth.read_saved_token() == dana  # a refused token replaces nothing


def test_a_refused_token_is_a_sign_in_error_and_nothing_is_kept(local_server, monkeypatch):
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", "not-a-token-of-this-server")
    with pytest.raises(SignInError) as caught:
        sign_in(local_server.url, prompt=refuse_prompt)
    message = str(caught.value)
    assert "refused the refresh token from $BLANKLY_REFRESH_TOKEN" in message and "--browser" in message
    assert "not-a-token-of-this-server" not in message
    assert not auth.token_file().exists() and current() is None


def test_a_url_that_is_not_http_is_a_sign_in_error():
    with pytest.raises(SignInError, match="give an http:// or https:// URL"):
        sign_in("localhost:8127", prompt=refuse_prompt)


def test_an_unreachable_server_is_a_sign_in_error(monkeypatch):
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", "whatever")
    port = free_port()
    with pytest.raises(SignInError, match=f"cannot reach the deployment server at http://127.0.0.1:{port}: is it"):
        sign_in(f"http://127.0.0.1:{port}", prompt=refuse_prompt)


def test_browser_sign_in_captures_the_redirect(local_server):
    token = local_server.refresh_token("dana")
    port = free_port()
    lines: list[str] = []
    visits = []

    def notify(line: str) -> None:  # the user sees the link, then their browser is redirected
        lines.append(line)
        if "waiting" in line:
            visit = threading.Thread(
                target=lambda: visits.append(requests.get(f"http://127.0.0.1:{port}/?token={token}", timeout=10))
            )
            visit.start()
            visits.append(visit)

    signed = sign_in(local_server.url, browser=True, browser_port=port, notify=notify,
                     signin_link="https://example.test/signin", prompt=refuse_prompt)
    visits[0].join(10)
    assert (signed.token_source, signed.user_name) == ("browser", "dana")
    assert "open https://example.test/signin" in lines[0] and f"http://localhost:{port}/?token=" in lines[0]
    assert visits[1].status_code == 200
    assert auth.read_saved_token() == token
    assert token not in " ".join(lines)


def test_browser_sign_in_falls_back_to_the_prompt(local_server):
    token = local_server.refresh_token("erin")
    lines: list[str] = []
    signed = sign_in(local_server.url, browser=True, browser_port=free_port(), browser_timeout=0.3,
                     notify=lines.append, prompt=lambda text: token)
    assert (signed.token_source, signed.user_name) == ("prompt", "erin")
    assert any("paste the token" in line for line in lines)


def test_sign_out_revokes_the_token_and_forgets_it(local_server):
    token = local_server.refresh_token("frank")
    signed = sign_in(local_server.url, prompt=lambda text: token)
    assert auth.read_saved_token() == token
    assert sign_out() is True
    assert current() is None and not auth.token_file().exists()
    with pytest.raises(DeploymentError, match="refused the refresh token"):
        DeploymentClient(signed.url, token).login()  # revoked on the server too
    assert sign_out() is False  # nobody signed in: nothing to revoke


def test_signing_out_of_the_local_server_keeps_a_blankly_login(tmp_path):
    auth.save_token("a-real-blankly-login")
    sign_in()
    sign_out()
    assert current() is None
    assert auth.read_saved_token() == "a-real-blankly-login"
    assert sign_in().local  # its local token still works


def test_the_server_url_comes_from_the_config_else_blankly_deploy_url(monkeypatch):
    config = BlanklyConfig()
    assert config.server_url() is None  # the embedded local server
    monkeypatch.setenv("BLANKLY_DEPLOY_URL", "  http://127.0.0.1:8127 ")
    assert config.server_url() == "http://127.0.0.1:8127"  # read when needed, not when the config was made
    monkeypatch.setenv("BLANKLY_DEPLOY_URL", "")
    assert config.server_url() is None
    assert BlanklyConfig(url="http://127.0.0.1:9000").server_url() == "http://127.0.0.1:9000"


def test_one_session_at_a_time_across_threads(local_server):
    tokens = [local_server.refresh_token(u) for u in ("gail", "hugo", "ivan", "jane")]
    signed = []

    def run(token: str) -> None:
        signed.append(sign_in(local_server.url, prompt=lambda text: token))

    threads = [threading.Thread(target=run, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(signed) == 4 and current() in signed
    assert session.current().client.projects()  # the survivor's client still works
