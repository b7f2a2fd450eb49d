"""Bad input to the real server: a clear JSON error with a fitting status, and nothing stored.

Every test checks, after the rejected request, that no row changed in any table and no
file appeared in the data dir (run logs aside) and that the upload temp dir is empty.
"""
from __future__ import annotations

import base64
import json
import os
import stat
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests

from blankly_magics.server.tokens import IdTokens, load_signing_key
from tests.fixtures_server import wait_for, write_model_zip

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"

# Every route behind auth, with the method it answers.
AUTHED_ROUTES = [
    ("POST", "/auth/logout"), ("POST", "/project/create"), ("GET", "/project/list"),
    ("POST", "/project/plans"), ("GET", "/project/teams"),
    ("POST", "/project/generate-project-token"), ("POST", "/model/create-model"),
    ("POST", "/model/list"), ("POST", "/model/details"), ("GET", "/model/status"),
    ("POST", "/model/deploy"), ("POST", "/model/backtest"), ("POST", "/model/backtestUploadedModel"),
    ("POST", "/model/backtest-uploaded-model"), ("POST", "/model/upload"), ("POST", "/model/run"),
    ("POST", "/model/kill"), ("POST", "/model/delete"), ("GET", "/model/versions"),
    ("GET", "/model/backtests"), ("GET", "/model/deployment"), ("GET", "/model/logs"),
    ("GET", "/backtest/status"), ("GET", "/backtest/result"), ("GET", "/backtest/logs"),
    ("POST", "/backtest/cancel"),
]


@pytest.fixture
def server(local_server):
    """The real server with two users signed up (their token rows exist before any snapshot)."""
    local_server.refresh_token("alice")
    local_server.refresh_token("bob")
    return local_server


@contextmanager
def nothing_stored(server) -> Iterator[None]:
    before = server.snapshot()
    yield
    assert before.diff(server.snapshot()) == {}
    assert not list((server.data_dir / "tmp").iterdir())


def rejected(answer: requests.Response, status: int, *needles: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    for needle in needles:
        assert needle in error, error
    assert "Traceback" not in error
    return error


def upload(server, zip_bytes_or_path, route: str = "/model/deploy", user: str = "alice", **fields):
    body = zip_bytes_or_path
    if isinstance(body, Path):
        body = body.read_bytes()
    return server.request(
        "POST", route, user=user, files={"model": ("model.zip", body, "application/zip")},
        data=fields,
    )


def raw_zip(path: Path, members: dict, infos: tuple = ()) -> Path:
    """A zip with exactly these members (names unchecked) plus hand-made ZipInfos."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
        for info, content in infos:
            zf.writestr(info, content)
    return path


def good_members(**extra) -> dict:
    members = {
        "model/blankly.json": json.dumps({"main_script": "./bot.py", "python_version": PYTHON}),
        "model/bot.py": "print(1)\n",
        "model/requirements.txt": "",
    }
    members.update(extra)
    return members


def _model(server, user="alice", name="Mine"):
    answer = server.request("POST", "/model/create-model", user=user, data={"name": name})
    assert answer.ok, answer.text
    return answer.json()["id"]


def _version(server, tmp_path, user="alice"):
    answer = upload(server, write_model_zip(tmp_path / f"{user}.zip"), route="/model/upload", user=user)
    assert answer.ok, answer.text
    return answer.json()


# -- auth -------------------------------------------------------------------------------------


def test_every_authed_route_refuses_a_request_without_token(server):
    with nothing_stored(server):
        for method, path in AUTHED_ROUTES:
            rejected(server.request(method, path, user=None), 401, "missing 'token' header")


def test_a_wrong_token_is_refused(server):
    with nothing_stored(server):
        for token in ("nonsense", "a.b", "a.b.c", "é" * 10, "x" * 5000):
            answer = server.request("GET", "/project/list", user=None, headers={"token": token})
            rejected(answer, 401, "idToken")


def test_a_forged_token_is_refused(server):
    real = server.id_token("alice")
    payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["u"] = server.user_id("bob")  # claim to be bob with alice's signature
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with nothing_stored(server):
        answer = server.request("GET", "/project/list", user=None, headers={"token": f"{forged}.{signature}"})
        rejected(answer, 401, "signature")
        other_key = IdTokens(b"k" * 32, 3600).issue(claims["u"], claims["s"])
        rejected(server.request("GET", "/project/list", user=None, headers={"token": other_key}), 401, "signature")


def test_an_expired_id_token_is_refused(server):
    real = server.id_token("alice")
    payload = real.split(".")[0]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    # Signed with the server's own key, but two hours old.
    old = IdTokens(load_signing_key(server.data_dir), 3600).issue(
        claims["u"], claims["s"], now=time.time() - 7200
    )
    with nothing_stored(server):
        rejected(server.request("GET", "/project/list", user=None, headers={"token": old}), 401, "expired")


def test_a_bad_refresh_token_is_refused(server):
    with nothing_stored(server):
        answer = requests.post(f"{server.url}/auth/token", data={"refreshToken": "not-a-token"}, timeout=30)
        rejected(answer, 401, "refresh token is not valid")
        missing = requests.post(f"{server.url}/auth/token", data={}, timeout=30)
        rejected(missing, 400, "refreshToken")


# -- other users' objects -----------------------------------------------------------------------


def test_another_users_project_answers_like_a_missing_one(server):
    bobs = server.request("POST", "/project/create", user="bob", data={"name": "Bob's"}).json()["id"]
    with nothing_stored(server):
        theirs = rejected(server.request("POST", "/model/list", data={"projectId": bobs}), 404)
        missing = rejected(server.request("POST", "/model/list", data={"projectId": "f" * 32}), 404)
        assert theirs.replace(bobs, "ID") == missing.replace("f" * 32, "ID")
        rejected(server.request("POST", "/model/create-model", data={"projectId": bobs, "name": "x"}), 404)
        rejected(server.request("POST", "/project/generate-project-token", data={"projectId": bobs}), 404)


def test_another_users_model_answers_like_a_missing_one(server, tmp_path):
    bobs = _version(server, tmp_path, user="bob")["modelId"]
    with nothing_stored(server):
        for method, path in [("POST", "/model/details"), ("GET", "/model/versions"),
                             ("GET", "/model/backtests"), ("GET", "/model/deployment"),
                             ("GET", "/model/logs"), ("POST", "/model/run"),
                             ("POST", "/model/kill"), ("POST", "/model/delete")]:
            key = "params" if method == "GET" else "data"
            theirs = rejected(server.request(method, path, **{key: {"modelId": bobs}}), 404)
            missing = rejected(server.request(method, path, **{key: {"modelId": "0" * 32}}), 404)
            assert theirs.replace(bobs, "ID") == missing.replace("0" * 32, "ID"), path
        rejected(upload(server, write_model_zip(tmp_path / "m.zip"), modelId=bobs), 404, "not found")


def test_another_users_version_answers_like_a_missing_one(server, tmp_path):
    bob = _version(server, tmp_path, user="bob")
    alice = _version(server, tmp_path, user="alice")
    with nothing_stored(server):
        for model_id, version_id in [(alice["modelId"], bob["versionId"]), (bob["modelId"], bob["versionId"])]:
            answer = server.request("POST", "/model/backtestUploadedModel",
                                    json={"modelId": model_id, "versionId": version_id})
            rejected(answer, 404, "not found")
        rejected(server.request("POST", "/model/run",
                                data={"modelId": alice["modelId"], "versionId": bob["versionId"]}), 404)


def test_another_users_backtest_answers_like_a_missing_one(server, tmp_path):
    bobs = upload(server, write_model_zip(tmp_path / "b.zip"), route="/model/backtest", user="bob").json()
    wait_for(  # let it finish, so its row stops changing
        lambda: server.request("GET", "/backtest/status", user="bob",
                               params={"backtestId": bobs["backtestId"]}).json()["endedAt"],
        "bob's backtest to finish",
    )
    with nothing_stored(server):
        for method, path in [("GET", "/backtest/status"), ("GET", "/backtest/result"),
                             ("GET", "/backtest/logs"), ("POST", "/backtest/cancel")]:
            key = "params" if method == "GET" else "data"
            theirs = rejected(server.request(method, path, **{key: {"backtestId": bobs["backtestId"]}}), 404)
            missing = rejected(server.request(method, path, **{key: {"backtestId": "1" * 32}}), 404)
            assert theirs.replace(bobs["backtestId"], "ID") == missing.replace("1" * 32, "ID")


# -- fields -----------------------------------------------------------------------------------


def test_a_missing_required_field_is_named(server):
    with nothing_stored(server):
        rejected(server.request("POST", "/model/details", data={}), 400, "'modelId'")
        rejected(server.request("POST", "/project/create", data={"description": "x"}), 400, "'name'")
        rejected(server.request("POST", "/model/create-model", data={"name": "  "}), 400, "'name'")
        rejected(server.request("GET", "/backtest/status"), 400, "'backtestId'")


def test_an_unknown_plan_lists_the_plans(server, tmp_path):
    zip_path = write_model_zip(tmp_path / "m.zip")
    live = server.request("POST", "/project/plans", data={"type": "live"}).json()
    backtesting = server.request("POST", "/project/plans", data={"type": "backtesting"}).json()
    with nothing_stored(server):
        error = rejected(upload(server, zip_path, plan="gigantic"), 400, "unknown live plan 'gigantic'")
        assert all(name in error for name in live)
        error = rejected(upload(server, zip_path, route="/model/backtest", plan="gigantic"), 400)
        assert all(name in error for name in backtesting)
        rejected(server.request("POST", "/project/plans", data={"type": "quantum"}), 400, "'live'")


def test_a_python_the_server_cannot_run_lists_the_ones_it_can(server, tmp_path):
    with nothing_stored(server):
        error = rejected(upload(server, write_model_zip(tmp_path / "m.zip"), pythonVersion="2.7"),
                         400, "cannot run Python 2.7", PYTHON)
        assert "it can run:" in error
        from_manifest = write_model_zip(tmp_path / "old.zip", python_version="3.1")
        rejected(upload(server, from_manifest), 400, "cannot run Python 3.1", "blankly.json")
        rejected(upload(server, write_model_zip(tmp_path / "m.zip"), pythonVersion="three"), 400,
                 "not a Python version")


def test_backtest_args_must_be_a_json_object(server, tmp_path):
    zip_path = write_model_zip(tmp_path / "m.zip")
    with nothing_stored(server):
        rejected(upload(server, zip_path, route="/model/backtest", backtestArgs="[1, 2]"), 400,
                 "backtestArgs must be a JSON object")
        rejected(upload(server, zip_path, route="/model/backtest", backtestArgs="{to: 1y}"), 400,
                 "backtestArgs is not valid JSON")
        rejected(upload(server, zip_path, route="/model/backtest", backtestArgs="[" * 100_000), 400,
                 "backtestArgs")


def test_backtest_args_of_an_uploaded_model_must_be_an_object(server, tmp_path):
    stored = _version(server, tmp_path)
    with nothing_stored(server):
        answer = server.request("POST", "/model/backtestUploadedModel",
                                json={"modelId": stored["modelId"], "backtestArgs": ["to", "1y"]})
        rejected(answer, 400, "backtestArgs must be a JSON object")
        not_json = server.request("POST", "/model/backtestUploadedModel", data="{", headers={"content-type": "application/json"})
        rejected(not_json, 400, "not valid JSON")


def test_a_screener_needs_a_schedule(server, tmp_path):
    screener = write_model_zip(tmp_path / "s.zip", manifest={"type": "screener"})
    with nothing_stored(server):
        rejected(upload(server, screener), 400, "screener needs a schedule")
        rejected(upload(server, screener, route="/model/upload"), 400, "screener needs a schedule")
        rejected(upload(server, screener, schedule="every monday"), 400, "schedule")
        rejected(upload(server, screener, schedule="61 * * * *"), 400, "schedule")
    scheduled = write_model_zip(tmp_path / "ok.zip", manifest={"type": "screener",
                                                               "screener": {"schedule": "30 14 * * 1-5"}})
    stored = upload(server, scheduled, route="/model/upload")
    assert stored.ok, stored.text
    versions = server.request("GET", "/model/versions", params={"modelId": stored.json()["modelId"]}).json()
    assert versions[0]["schedule"] == "30 14 * * 1-5" and versions[0]["type"] == "screener"


def test_create_new_false_needs_a_model_id(server, tmp_path):
    zip_path = write_model_zip(tmp_path / "m.zip")
    model_id = _model(server)
    with nothing_stored(server):
        rejected(upload(server, zip_path, createNew="false"), 400, "createNew is false", "modelId")
        rejected(upload(server, zip_path, createNew="true", modelId=model_id), 400, "createNew=true")
        rejected(upload(server, zip_path, createNew="maybe"), 400, "true or false")


def test_a_form_sent_as_something_else_is_refused(server):
    with nothing_stored(server):
        answer = server.request("POST", "/project/create", data=b"<xml/>", headers={"content-type": "text/xml"})
        rejected(answer, 400, "x-www-form-urlencoded")
        big = server.request("POST", "/project/create", data={"name": "x" * (2 << 20)})
        rejected(big, 413)


# -- the zip ----------------------------------------------------------------------------------


def test_no_zip_is_refused(server):
    with nothing_stored(server):
        rejected(server.request("POST", "/model/deploy", data={"name": "x"}), 400, "multipart", "'model'")
        answer = server.request("POST", "/model/deploy", files={"other": ("x.txt", b"hi")}, data={"name": "x"})
        rejected(answer, 400, "no zip attached", "'model'")


def test_a_file_that_is_not_a_zip_is_refused(server):
    with nothing_stored(server):
        rejected(upload(server, b"just some text, not a zip"), 422, "not a zip")
        rejected(upload(server, b""), 422, "not a zip")


def test_a_truncated_zip_is_refused(server, tmp_path):
    data = write_model_zip(tmp_path / "m.zip").read_bytes()
    with nothing_stored(server):
        rejected(upload(server, data[: len(data) // 2]), 422)


def test_a_zip_without_the_model_root_is_refused(server, tmp_path):
    members = {"bot/blankly.json": "{}", "bot/bot.py": "print(1)"}
    with nothing_stored(server):
        rejected(upload(server, raw_zip(tmp_path / "r.zip", members)), 422, "model/")
        stray = raw_zip(tmp_path / "s.zip", good_members(**{"README.md": "outside"}))
        rejected(upload(server, stray), 422, "outside the single root folder model/")


def test_a_zip_without_blankly_json_is_refused(server, tmp_path):
    members = {"model/bot.py": "print(1)", "model/sub/blankly.json": "{}"}
    with nothing_stored(server):
        rejected(upload(server, raw_zip(tmp_path / "n.zip", members)), 422, "no model/blankly.json")


def test_a_blankly_json_that_is_not_json_is_refused(server, tmp_path):
    with nothing_stored(server):
        bad = raw_zip(tmp_path / "b.zip", good_members(**{"model/blankly.json": "{main_script: bot.py"}))
        rejected(upload(server, bad), 422, "blankly.json is not valid JSON")
        array = raw_zip(tmp_path / "a.zip", good_members(**{"model/blankly.json": "[]"}))
        rejected(upload(server, array), 422, "JSON object")


def test_a_main_script_missing_from_the_zip_is_refused(server, tmp_path):
    zip_path = write_model_zip(tmp_path / "m.zip", manifest={"main_script": "./strategy.py"})
    with nothing_stored(server):
        rejected(upload(server, zip_path), 422, "main_script", "strategy.py", "not in the zip")


def test_absolute_and_parent_paths_are_refused(server, tmp_path):
    with nothing_stored(server):
        absolute = raw_zip(tmp_path / "abs.zip", good_members(), ((zipfile.ZipInfo("/etc/evil"), "x"),))
        rejected(upload(server, absolute), 422, "absolute path")
        parent = raw_zip(tmp_path / "dots.zip", good_members(), ((zipfile.ZipInfo("model/../../evil"), "x"),))
        rejected(upload(server, parent), 422, "'..'")
    assert not (server.data_dir.parent / "evil").exists()


def test_symlink_entries_are_refused(server, tmp_path):
    link = zipfile.ZipInfo("model/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zip_path = raw_zip(tmp_path / "l.zip", good_members(), ((link, "/etc/passwd"),))
    with nothing_stored(server):
        rejected(upload(server, zip_path), 422, "symlink")


def test_an_upload_over_the_cap_is_refused_with_413(server_factory, tmp_path):
    server = server_factory(args=["--max-upload", "1"])
    server.refresh_token("alice")
    big = write_model_zip(tmp_path / "big.zip", files={"data.bin": os.urandom(3 << 20)})
    with nothing_stored(server):
        rejected(upload(server, big), 413, "larger than this server accepts (1 MB)", "--max-upload")

        # Without a Content-Length (chunked), the stream is cut as soon as it passes the cap.
        from requests_toolbelt import MultipartEncoder

        body = MultipartEncoder({"model": ("big.zip", big.read_bytes(), "application/zip")})
        chunks = iter(lambda: body.read(1 << 16), b"")
        answer = server.request("POST", "/model/deploy", data=chunks,
                                headers={"content-type": body.content_type})
        rejected(answer, 413, "larger than this server accepts")
    small = upload(server, write_model_zip(tmp_path / "small.zip"))
    assert small.ok, small.text  # the server is fine afterwards


def test_a_zip_bomb_is_refused_with_413(server_factory, tmp_path):
    server = server_factory(args=["--max-unpacked", "16", "--max-entries", "50"])
    server.refresh_token("alice")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in good_members().items():
            zf.writestr(name, content)
        with zf.open("model/zeros.bin", "w", force_zip64=True) as fh:
            for _ in range(32):
                fh.write(bytes(1 << 20))  # 32 MB of zeros, about 32 KB zipped
    assert bomb.stat().st_size < 1 << 20
    many = raw_zip(tmp_path / "many.zip", good_members(**{f"model/f{i}.txt": "" for i in range(60)}))
    with nothing_stored(server):
        rejected(upload(server, bomb), 413, "unpacks to more than")
        rejected(upload(server, many), 413, "entries, over the limit of 50")


def test_small_zips_that_unpack_big_or_hold_many_files_pass_on_the_servers_own_limits(server, tmp_path):
    """A small upload is checked on the event loop under tighter limits first; one over
    those (unpacks to a lot, many entries, bzip2) but within the server's limits is checked
    again off the loop, and stored."""
    from blankly_magics.server.app import INLINE_ENTRIES, INLINE_UNPACKED
    from blankly_magics.server.uploads import MEMORY_LIMIT

    wide = tmp_path / "wide.zip"
    with zipfile.ZipFile(wide, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in good_members().items():
            zf.writestr(name, content)
        zf.writestr("model/zeros.bin", bytes(INLINE_UNPACKED + (1 << 20)))
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in good_members(**{f"model/{i}": "" for i in range(INLINE_ENTRIES + 10)}).items():
            zf.writestr(name, content)
    bzipped = tmp_path / "bzipped.zip"  # bzip2 members are never unpacked on the loop
    with zipfile.ZipFile(bzipped, "w", zipfile.ZIP_BZIP2) as zf:
        for name, content in good_members().items():
            zf.writestr(name, content)
    for zip_path in (wide, many, bzipped):
        data = zip_path.read_bytes()
        assert len(data) <= MEMORY_LIMIT  # held in memory, not spooled to disk
        answer = upload(server, zip_path, route="/model/upload")
        assert answer.ok, answer.text
        stored = server.data_dir / "versions" / f"{answer.json()['versionId']}.zip"
        assert stored.read_bytes() == data
    assert not list((server.data_dir / "tmp").iterdir())


def test_a_model_asked_for_in_another_of_your_projects_is_not_found(server):
    first = server.request("POST", "/project/create", data={"name": "One"}).json()["id"]
    second = server.request("POST", "/project/create", data={"name": "Two"}).json()["id"]
    model = server.request("POST", "/model/create-model", data={"projectId": first, "name": "m"}).json()["id"]
    with nothing_stored(server):
        answer = server.request("POST", "/model/details", data={"projectId": second, "modelId": model})
        rejected(answer, 404, "not found in project")
    # The personal project's id is what Blankly's client always sends: it finds the model.
    personal = server.request("POST", "/model/details", data={"projectId": server.user_id(), "modelId": model})
    assert personal.ok and personal.json()["projectId"] == first
