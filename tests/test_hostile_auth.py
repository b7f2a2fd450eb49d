"""Nobody is let in: tampered, truncated and revoked tokens, and one user reaching for another's objects.

Complements tests/test_server_validation.py (a hand-listed route table, forged and expired
tokens, cross-user reads of finished objects): here the routes come from the server's own
route table, so a new route cannot be forgotten; tokens are cut and tampered with
systematically, also on the upload routes; and another user's *running* backtest and live
model are attacked through every route that takes an id: each answer is byte for byte the
404 of a missing object, and the victim's runs carry on untouched.
"""
from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any, Optional

import pytest
import requests

from blankly_magics.client import DeploymentClient, DeploymentError
from blankly_magics.server.app import ROUTES
from tests.fixtures_server import ServerHandle, wait_for, write_model_zip
from tests.reliability import record

OPEN_ROUTES = {"/health", "/auth/token"}
TICKER = "import itertools, time\nfor i in itertools.count():\n    print(f'tick {i}', flush=True)\n    time.sleep(0.5)\n"
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
MISSING = "0123456789abcdef0123456789abcdef"  # the shape of a real id, known to nobody


def authed_routes() -> list[tuple[str, str]]:
    """(method, path) of every route behind a token, from the server's own table."""
    out = []
    for route in ROUTES:
        if route.path in OPEN_ROUTES:
            continue
        out.extend((method, route.path) for method in sorted(route.methods or ()) if method != "HEAD")
    return out


def refused(answer: requests.Response, status: int, *secrets: str) -> str:
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error and "Traceback" not in error
    for secret in secrets:
        assert secret not in answer.text
    return error


def stored_ids(data_dir: Path) -> dict[str, set]:
    """The ids in every table that holds objects (run progress columns left out)."""
    conn = sqlite3.connect(f"file:{data_dir / 'blankly.db'}?mode=ro", uri=True, timeout=15)
    try:
        return {
            table: {row[0] for row in conn.execute(f"SELECT id FROM {table}")}
            for table in ("users", "refresh_tokens", "projects", "project_tokens", "models", "versions",
                          "backtests")
        }
    finally:
        conn.close()


def upload(server: ServerHandle, route: str, zip_path: Path, user: Optional[str] = "alice",
           headers: Optional[dict] = None, **fields: str) -> requests.Response:
    with open(zip_path, "rb") as fh:
        return server.request("POST", route, user=user, headers=headers,
                              files={"model": ("m.zip", fh, "application/zip")}, data=fields)


def _claims(token: str) -> tuple[str, str]:
    payload, signature = token.split(".")
    return payload, signature


def _flip(text: str, at: int) -> str:
    """``text`` with the character at ``at`` replaced by another base64url character."""
    swap = "A" if text[at] != "A" else "B"
    return text[:at] + swap + text[at + 1:]


def tampered_tokens(alice: str, bob: str) -> dict[str, str]:
    payload, signature = _claims(alice)
    bob_payload, bob_signature = _claims(bob)
    step = max(1, len(alice) // 12)
    variants = {f"first {k} characters": alice[:k] for k in range(1, len(alice), step)}
    variants.update({f"payload character {i} changed": f"{_flip(payload, i)}.{signature}"
                     for i in range(0, len(payload), max(1, len(payload) // 6))})
    variants.update({f"signature character {i} changed": f"{payload}.{_flip(signature, i)}"
                     for i in range(0, len(signature), max(1, len(signature) // 4))})
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    longer = dict(claims, exp=claims["exp"] + 10 ** 6)
    variants.update({
        "last character dropped": alice[:-1],
        "one character added": alice + "A",
        "a second dot": alice + ".",
        "payload alone": payload,
        "signature alone": signature,
        "empty payload": f".{signature}",
        "empty signature": f"{payload}.",
        "upper-cased": alice.upper(),
        "with a Bearer prefix": f"Bearer {alice}",
        "alice's payload, bob's signature": f"{payload}.{bob_signature}",
        "bob's payload, alice's signature": f"{bob_payload}.{signature}",
        "lifetime extended, old signature": base64.urlsafe_b64encode(
            json.dumps(longer, separators=(",", ":")).encode()).rstrip(b"=").decode() + f".{signature}",
        "far too long": alice * 40,
    })
    return variants


# ---------------------------------------------------------------- no token


def test_every_route_in_the_servers_table_refuses_a_missing_or_misplaced_token(local_server, tmp_path):
    server = local_server
    valid = server.id_token("alice")
    before = server.snapshot()
    routes = authed_routes()
    assert len(routes) >= 28  # the table really was read
    variants = {
        "no token": {},
        "an empty token header": {"token": ""},
        "the idToken as a Bearer Authorization header": {"Authorization": f"Bearer {valid}"},
        "the idToken in a cookie": {"Cookie": f"token={valid}"},
    }
    tried = 0
    for method, path in routes:
        for what, headers in variants.items():
            answer = server.request(method, path, user=None, headers=headers)
            error = refused(answer, 401, valid)
            assert "missing 'token' header" in error, (path, what, error)
            tried += 1
    # the token in the query string or a form field is not a way in either
    assert refused(server.request("GET", f"/project/list?token={valid}", user=None), 401, valid)
    assert refused(server.request("POST", "/model/list", user=None, data={"token": valid}), 401, valid)
    assert before.diff(server.snapshot()) == {}
    record("bad input", "every authed route without a token (routes read from the server's table)",
           what="401 JSON naming the missing 'token' header; nothing stored",
           routes=len(routes), cases=tried + 2)


# ---------------------------------------------------------------- tampered tokens


def test_tampered_and_truncated_id_tokens_are_refused_even_on_uploads(local_server, tmp_path):
    server = local_server
    alice, bob = server.id_token("alice"), server.id_token("bob")
    zip_path = write_model_zip(tmp_path / "m.zip")
    before = server.snapshot()
    variants = tampered_tokens(alice, bob)
    for what, token in variants.items():
        for answer in (
            server.request("GET", "/project/list", user=None, headers={"token": token}),
            upload(server, "/model/backtest", zip_path, user=None, headers={"token": token}),
        ):
            error = refused(answer, 401, alice, bob)
            assert "idToken" in error or "token" in error, (what, error)
    assert before.diff(server.snapshot()) == {}
    assert not list((server.data_dir / "tmp").iterdir())
    # the genuine tokens still work: nothing above locked anyone out
    assert server.request("GET", "/project/list", user=None, headers={"token": alice}).ok
    record("bad input", "tampered and truncated idTokens, on a read and on an upload",
           what="401 JSON without the token in it; nothing stored", cases=2 * len(variants))


# ---------------------------------------------------------------- revoked refresh tokens


def test_a_revoked_sign_in_is_refused_everywhere_and_other_sign_ins_are_untouched(local_server, tmp_path):
    from blankly_magics.server.tokens import issue_refresh_token

    server = local_server
    first = server.refresh_token("alice")
    second = issue_refresh_token(server.data_dir, "alice")  # the same user on another machine
    bobs = server.refresh_token("bob")
    stale = server.id_token("alice")  # exchanged from the first sign-in
    zip_path = write_model_zip(tmp_path / "m.zip")
    fresh = requests.post(f"{server.url}/auth/token", data={"refreshToken": second}, timeout=30).json()["idToken"]

    # alice cannot revoke bob's sign-in, even knowing his refresh token
    answer = server.request("POST", "/auth/logout", user=None, headers={"token": fresh}, data={"refreshToken": bobs})
    assert answer.status_code == 200 and answer.json()["revoked"] is False
    assert requests.post(f"{server.url}/auth/token", data={"refreshToken": bobs}, timeout=30).ok

    answer = server.request("POST", "/auth/logout", user=None, headers={"token": stale}, data={"refreshToken": first})
    assert answer.json()["revoked"] is True
    before = server.snapshot()
    refused(requests.post(f"{server.url}/auth/token", data={"refreshToken": first}, timeout=30), 401, first)
    refused(upload(server, "/model/upload", zip_path, user=None, headers={"token": stale}), 401, stale)
    refused(server.request("POST", "/auth/logout", user=None, headers={"token": stale},
                           data={"refreshToken": first}), 401, stale)
    assert before.diff(server.snapshot()) == {}
    # the other sign-in of the same user goes on working
    assert upload(server, "/model/upload", zip_path, user=None, headers={"token": fresh}).ok

    client = DeploymentClient(server.url, first, retries=0)
    with pytest.raises(DeploymentError) as caught:
        client.projects()
    text = f"{caught.value} {caught.value!r} {client!r}"
    assert "refused the refresh token" in text and "sign in again with %blankly_login" in text
    assert first not in text
    record("bad input", "refresh token revoked by logout", what="exchange, stale idToken and uploads refused (401); "
           "another user's token cannot be revoked; the user's other sign-in keeps working", cases=6)


def test_a_remembered_id_token_still_expires_and_a_refused_one_is_never_remembered(tmp_path):
    """The server remembers idTokens it has checked (every request carries one): that
    must change neither expiry nor what a forged or tampered token gets."""
    from blankly_magics.server.tokens import IdTokens, InvalidToken, load_signing_key

    tokens = IdTokens(load_signing_key(tmp_path), ttl=60)
    token = tokens.issue("alice-id", "sign-in-1", now=1_000)
    for _ in range(3):
        assert tokens.verify(token, now=1_010).user_id == "alice-id"
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token, now=1_060)
    forged = IdTokens(b"k" * 32, ttl=60).issue("alice-id", "sign-in-1", now=1_000)
    payload, signature = token.split(".")
    tampered = f"{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    for bad in (forged, tampered, forged, tampered):
        with pytest.raises(InvalidToken, match="signature"):
            tokens.verify(bad, now=1_010)


# ---------------------------------------------------------------- another user's objects


def _wait_running(server: ServerHandle, model_id: str, backtest_id: str) -> tuple[int, str]:
    def check():
        dep = server.request("GET", "/model/deployment", user="bob", params={"modelId": model_id}).json()
        status = server.request("GET", "/backtest/status", user="bob", params={"backtestId": backtest_id}).json()
        return (dep["pid"], status["status"]) if dep["state"] == "running" and status["status"] == "running" else None

    return wait_for(check, "bob's live model and backtest to run", timeout=180)


def cross_user_attempts(bob: dict[str, str]) -> list[tuple[str, str, str, dict[str, Any], str]]:
    """(method, path, how the body travels, fields, which of bob's ids is in them) for every id-taking route."""
    m, v, b, p, s = bob["model"], bob["version"], bob["backtest"], bob["project"], bob["sweep"]
    return [
        ("POST", "/model/details", "data", {"modelId": m}, m),
        ("POST", "/model/details", "data", {"modelId": m, "projectId": p}, m),
        ("POST", "/model/list", "data", {"projectId": p}, p),
        ("POST", "/model/create-model", "data", {"projectId": p, "name": "x"}, p),
        ("POST", "/project/generate-project-token", "data", {"projectId": p}, p),
        ("GET", "/model/versions", "params", {"modelId": m}, m),
        ("GET", "/model/backtests", "params", {"modelId": m}, m),
        ("GET", "/model/deployment", "params", {"modelId": m}, m),
        ("GET", "/model/logs", "params", {"modelId": m}, m),
        ("GET", "/model/activity", "params", {"modelId": m}, m),
        ("POST", "/model/run", "data", {"modelId": m}, m),
        ("POST", "/model/run", "data", {"modelId": m, "versionId": v}, m),
        ("POST", "/model/kill", "data", {"modelId": m}, m),
        ("POST", "/model/delete", "data", {"modelId": m}, m),
        ("POST", "/model/deploy", "zip", {"modelId": m}, m),
        ("POST", "/model/backtest", "zip", {"modelId": m}, m),
        ("POST", "/model/upload", "zip", {"modelId": m}, m),
        ("POST", "/model/upload", "zip", {"projectId": p}, p),
        ("POST", "/model/backtest", "zip", {"projectId": p}, p),
        ("POST", "/model/backtestUploadedModel", "json", {"modelId": m}, m),
        ("POST", "/model/backtest-uploaded-model", "json", {"modelId": m, "versionId": v}, m),
        ("POST", "/model/backtestUploadedModel", "json", {"modelId": "ALICE", "versionId": v}, v),
        ("POST", "/model/backtestUploadedModel", "json", {"modelId": "ALICE", "projectId": p}, p),
        ("GET", "/backtest/status", "params", {"backtestId": b}, b),
        ("GET", "/backtest/result", "params", {"backtestId": b}, b),
        ("GET", "/backtest/logs", "params", {"backtestId": b}, b),
        ("POST", "/backtest/cancel", "data", {"backtestId": b}, b),
        ("GET", "/sweep/status", "params", {"sweepId": s}, s),
        ("GET", "/sweep/table", "params", {"sweepId": s}, s),
        ("POST", "/sweep/cancel", "data", {"sweepId": s}, s),
        ("GET", "/sweep/list", "params", {"modelId": m}, m),
        ("POST", "/sweep/create", "json", {"modelId": m, "grid": {"delay": [1]}}, m),
        ("POST", "/sweep/create", "zip", {"modelId": m, "grid": '{"delay": [1]}'}, m),
    ]


def test_another_users_running_objects_answer_exactly_like_missing_ones_and_keep_running(
    local_server: ServerHandle, tmp_path: Path
) -> None:
    server = local_server
    ticker = write_model_zip(tmp_path / "tick.zip", files={"bot.py": TICKER})
    sleeper = write_model_zip(tmp_path / "sleep.zip", files={"bot.py": SLEEPER})
    live = upload(server, "/model/deploy", ticker, user="bob", plan="nano").json()
    bt = upload(server, "/model/backtest", sleeper, user="bob", modelId=live["modelId"]).json()
    project = server.request("POST", "/project/create", user="bob", data={"name": "Bob's"}).json()["id"]
    swept = write_model_zip(tmp_path / "swept.zip", manifest={"parameters": {"delay": 0}}, files={"bot.py": SLEEPER})
    sweep = upload(server, "/sweep/create", swept, user="bob", modelId=live["modelId"], grid='{"delay": [1, 2]}').json()
    alices = upload(server, "/model/upload", write_model_zip(tmp_path / "a.zip")).json()["modelId"]
    bob = {"model": live["modelId"], "version": live["versionId"], "backtest": bt["backtestId"], "project": project,
           "sweep": sweep["sweepId"]}
    pid, _ = _wait_running(server, bob["model"], bob["backtest"])
    before = stored_ids(server.data_dir)

    attempts = cross_user_attempts(bob)
    covered = {path for _, path, *_ in attempts}
    id_routes = {path for _, path in authed_routes()} - {
        "/auth/logout", "/project/create", "/project/list", "/project/plans", "/project/teams", "/model/status",
        "/keys/list", "/keys/set", "/keys/delete"}  # the caller's own keys only: tests/server/test_keys.py
    assert id_routes <= covered, f"routes taking an id but not attacked: {sorted(id_routes - covered)}"
    for method, path, how, fields, theirs in attempts:
        answers = []
        for value in (theirs, MISSING):
            sent = {k: (alices if x == "ALICE" else value if x == theirs else x) for k, x in fields.items()}
            if how == "zip":
                answer = upload(server, path, write_model_zip(tmp_path / "try.zip"), **sent)
            else:
                key = {"data": "data", "params": "params", "json": "json"}[how]
                answer = server.request(method, path, **{key: sent})
            answers.append(refused(answer, 404).replace(value, "ID"))
        assert answers[0] == answers[1], (path, fields, answers)

    # alice's view of the world does not list bob's things either
    listed = json.dumps([server.request("GET", "/model/status").json(),
                         server.request("GET", "/project/list").json()])
    assert all(ident not in listed for ident in bob.values())
    # nothing was stored, deleted, killed or cancelled
    assert stored_ids(server.data_dir) == before
    dep = server.request("GET", "/model/deployment", user="bob", params={"modelId": bob["model"]}).json()
    assert dep["state"] == "running" and dep["pid"] == pid
    status = server.request("GET", "/backtest/status", user="bob", params={"backtestId": bob["backtest"]}).json()
    assert status["status"] == "running"
    swept = server.request("GET", "/sweep/status", user="bob", params={"sweepId": bob["sweep"]}).json()
    assert swept["status"] in ("queued", "running") and "cancelled" not in swept["states"]
    record("bad input", "another user's project, model, version, backtest, sweep and running live model, via every "
           "id route",
           what="the same 404 body as a missing id; nothing stored; the victim's runs untouched",
           cases=2 * len(attempts), routes=len(covered))
