"""The local deployment server over HTTP: the real process, real zips, real runs."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import psutil
import pytest
import requests

from tests.fixtures_notebooks import PRICES_CSV, REPO, RSI_BACKTEST_ARGS
from tests.fixtures_notebooks import RSI_IMPORTS, RSI_LOGIC, RSI_SETUP
from tests.fixtures_server import wait_for, write_model_zip

TICKER = """import itertools, time
for i in itertools.count():
    print(f"tick {i}", flush=True)
    time.sleep(0.5)
"""
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"


def _server_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "blankly_magics.server", *args]


def _upload(server, zip_path: Path, route: str = "/model/upload", user: str = "alice", **fields):
    with open(zip_path, "rb") as fh:
        return server.request(
            "POST", route, user=user, files={"model": ("model.zip", fh, "application/zip")},
            data=fields,
        )


def _ok(answer: requests.Response) -> dict:
    assert answer.status_code == 200, answer.text
    return answer.json()


def _backtest_done(server, backtest_id: str):
    def check():
        status = _ok(server.request("GET", "/backtest/status", params={"backtestId": backtest_id}))
        return status if status["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(check, f"backtest {backtest_id} to finish", timeout=300)


def _deployment(server, model_id: str) -> dict:
    return _ok(server.request("GET", "/model/deployment", params={"modelId": model_id}))


def _wait_state(server, model_id: str, state: str, **extra) -> dict:
    def check():
        dep = _deployment(server, model_id)
        if dep["state"] == state and all(dep.get(k) == v for k, v in extra.items()):
            return dep
        return None

    return wait_for(check, f"model {model_id} to be {state}", timeout=180)


# -- the process --------------------------------------------------------------------------


def test_help_explains_every_option():
    out = subprocess.run(_server_cmd("--help"), capture_output=True, text=True, check=True).stdout
    for option in ("--host", "--port", "--data-dir", "--token-ttl", "--max-upload", "--plans",
                   "--max-workers", "--warm-workers", "--max-queue", "--log-level"):
        assert option in out
    assert "127.0.0.1" in out and "token" in out
    token_help = subprocess.run(
        _server_cmd("token", "--help"), capture_output=True, text=True, check=True
    ).stdout
    assert "--data-dir" in token_help and "--user" in token_help


def test_listens_on_a_free_port_writes_server_json_and_removes_it_on_sigterm(server_factory):
    server = server_factory()
    info = json.loads((server.data_dir / "server.json").read_text())
    assert set(info) == {"url", "pid", "version", "startedAt"}
    assert info["pid"] == server.proc.pid
    assert info["url"].startswith("http://127.0.0.1:") and not info["url"].endswith(":0")
    assert f"Blankly deployment server listening on {info['url']}" in server.log()
    health = requests.get(f"{info['url']}/health", timeout=30).json()
    assert health["service"] == "blankly-magics-deployment-server" and health["version"]
    # The data dir keeps secrets: nobody else may read it.
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    for name in ("blankly.db", "signing.key"):
        assert stat.S_IMODE((server.data_dir / name).stat().st_mode) == 0o600
    server.stop()
    assert not server.running
    assert not (server.data_dir / "server.json").exists()


def test_a_second_server_on_the_same_data_dir_is_refused(server_factory):
    first = server_factory()
    second = subprocess.run(
        _server_cmd("--port", "0", "--data-dir", str(first.data_dir)),
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 1
    assert "another server is already using" in second.stderr
    assert json.loads((first.data_dir / "server.json").read_text())["pid"] == first.proc.pid
    assert requests.get(f"{first.url}/health", timeout=30).ok


def test_every_error_is_json_even_unknown_routes_and_methods(local_server):
    missing = requests.get(f"{local_server.url}/no/such/route", timeout=30)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/json")
    assert "no such route" in missing.json()["error"]
    wrong_method = requests.delete(f"{local_server.url}/project/list", timeout=30)
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method.json()["error"]


# -- auth -----------------------------------------------------------------------------------


def test_token_subcommand_prints_a_refresh_token_stored_only_as_a_hash(local_server):
    out = subprocess.run(
        _server_cmd("token", "--data-dir", str(local_server.data_dir), "--user", "bob"),
        capture_output=True, text=True, check=True, timeout=60,
    )
    token = out.stdout.strip()
    answer = _ok(requests.post(f"{local_server.url}/auth/token", data={"refreshToken": token}, timeout=30))
    assert answer["data"]["name"] == "bob" and answer["data"]["user_id"]
    assert answer["expiresIn"] == 3600 and answer["idToken"]
    with sqlite3.connect(local_server.data_dir / "blankly.db") as conn:
        hashes = {r[0] for r in conn.execute("SELECT token_hash FROM refresh_tokens")}
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    for path in local_server.data_dir.iterdir():
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in local_server.log()


def test_logout_revokes_the_refresh_token_and_the_id_tokens_from_it(local_server):
    refresh = local_server.refresh_token("alice")
    id_token = local_server.id_token("alice")
    other = local_server.id_token("bob")
    answer = _ok(local_server.request(
        "POST", "/auth/logout", user=None, headers={"token": id_token},
        data={"refreshToken": refresh},
    ))
    assert answer["status"] == "success" and answer["revoked"] is True
    again = requests.post(f"{local_server.url}/auth/token", data={"refreshToken": refresh}, timeout=30)
    assert again.status_code == 401 and "not valid" in again.json()["error"]
    stale = requests.get(f"{local_server.url}/project/list", headers={"token": id_token}, timeout=30)
    assert stale.status_code == 401 and "revoked" in stale.json()["error"]
    # Another user's sign-in is untouched.
    assert requests.get(f"{local_server.url}/project/list", headers={"token": other}, timeout=30).ok


def test_token_ttl_option_sets_expires_in(server_factory):
    server = server_factory(args=["--token-ttl", "120"])
    answer = requests.post(
        f"{server.url}/auth/token", data={"refreshToken": server.refresh_token()}, timeout=30
    ).json()
    assert answer["expiresIn"] == 120


# -- projects and plans ---------------------------------------------------------------------


def test_personal_project_exists_and_projects_are_per_user(local_server):
    user_id = local_server.user_id("alice")
    projects = _ok(local_server.request("GET", "/project/list"))
    assert [p["id"] for p in projects] == [user_id]
    assert projects[0]["projectId"] == user_id and projects[0]["personal"] is True
    created = _ok(local_server.request(
        "POST", "/project/create", data={"name": "RSI Models", "description": "buy < 30"}
    ))
    assert created["name"] == "RSI Models" and created["description"] == "buy < 30"
    assert created["projectId"] == created["id"] != user_id
    listed = _ok(local_server.request("GET", "/project/list"))
    assert [p["id"] for p in listed] == [user_id, created["id"]]
    bobs = _ok(local_server.request("GET", "/project/list", user="bob"))
    assert created["id"] not in [p["id"] for p in bobs]
    assert _ok(local_server.request("GET", "/project/teams")) == []


def test_plans_are_sized_from_this_machine(local_server):
    cores = os.cpu_count() or 1
    ram = psutil.virtual_memory().total // (1024 * 1024)
    backtesting = _ok(local_server.request("POST", "/project/plans", data={"type": "backtesting"}))
    live = _ok(local_server.request("POST", "/project/plans", data={"type": "live"}))
    assert backtesting and live
    for plans in (backtesting, live):
        for plan in plans.values():
            assert 0 < plan["cpu"] <= cores * 1000 and 0 < plan["ram"] <= ram
    assert all(plan["timeout"] > 0 for plan in backtesting.values())
    for plans in (backtesting, live):  # every default lets a run write 2 GB at most, and caps its processes
        assert all(0 < plan["disk"] <= 2048 and plan["processes"] > 0 for plan in plans.values())


def test_plans_file_replaces_the_defaults(server_factory, tmp_path):
    plans = {
        "backtesting": {"tiny": {"cpu": 500, "ram": 256, "timeout": 60}, "big": {"cpu": 1000, "ram": 1024}},
        "live": {"pico": {"cpu": 100, "ram": 128}},
    }
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(plans))
    server = server_factory(args=["--plans", str(path)])
    answered = _ok(server.request("POST", "/project/plans", data={"type": "backtesting"}))
    assert answered == {"tiny": {"cpu": 500, "ram": 256, "timeout": 60.0, "disk": 1024, "processes": 64},
                        "big": {"cpu": 1000, "ram": 1024, "timeout": 900.0, "disk": 1024, "processes": 64}}
    assert _ok(server.request("POST", "/project/plans", data={"type": "live"})) == {
        "pico": {"cpu": 100, "ram": 128, "disk": 1024, "processes": 64}}


def test_a_bad_plans_file_stops_the_server_with_a_clear_error(tmp_path):
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"live": {"nano": {"cpu": -1, "ram": 512}}}))
    result = subprocess.run(
        _server_cmd("--port", "0", "--data-dir", str(tmp_path / "d"), "--plans", str(path)),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "live plan 'nano' cpu" in result.stderr and "positive" in result.stderr


def test_generate_project_token_keeps_only_a_hash_of_the_pass(local_server):
    keys = _ok(local_server.request(
        "POST", "/project/generate-project-token",
        data={"projectId": local_server.user_id(), "name": "Local keys", "autogenerated": True},
    ))
    assert keys["apiKey"] and keys["apiPass"] and keys["apiKey"] != keys["apiPass"]
    with sqlite3.connect(local_server.data_dir / "blankly.db") as conn:
        rows = conn.execute("SELECT api_key, pass_hash FROM project_tokens").fetchall()
    assert rows == [(keys["apiKey"], hashlib.sha256(keys["apiPass"].encode()).hexdigest())]


# -- models and versions --------------------------------------------------------------------


def test_create_list_and_detail_models(local_server):
    user_id = local_server.user_id()
    model = _ok(local_server.request(
        "POST", "/model/create-model",
        data={"projectId": user_id, "type": "strategy", "name": "RSI", "description": "rsi bot"},
    ))
    assert model["modelId"] == model["id"] and model["projectId"] == user_id
    assert (model["name"], model["type"], model["description"]) == ("RSI", "strategy", "rsi bot")
    models = _ok(local_server.request("POST", "/model/list", data={"projectId": user_id}))
    assert [m["id"] for m in models] == [model["id"]]
    details = _ok(local_server.request(
        "POST", "/model/details", data={"projectId": user_id, "modelId": model["id"]}
    ))
    assert details["versions"] == [] and details["deployment"] is None
    status = _ok(local_server.request("GET", "/model/status"))
    assert status == [{"modelId": model["id"], "name": "RSI", "projectId": user_id,
                       "state": "none", "versionId": None, "since": None}]


def test_uploads_become_immutable_versions_kept_byte_for_byte(local_server, tmp_path):
    first_zip = write_model_zip(tmp_path / "one.zip")
    first = _ok(_upload(local_server, first_zip, name="Mover", versionDescription="first"))
    assert first["status"] == "success" and first["timestamp"] > 0
    assert first["projectId"] == local_server.user_id()
    second_zip = write_model_zip(tmp_path / "two.zip", files={"bot.py": "print('v2')\n"})
    second = _ok(_upload(
        local_server, second_zip, modelId=first["modelId"], versionDescription="second"
    ))
    assert second["modelId"] == first["modelId"] and second["versionId"] != first["versionId"]

    versions = _ok(local_server.request("GET", "/model/versions", params={"modelId": first["modelId"]}))
    assert [v["versionId"] for v in versions] == [second["versionId"], first["versionId"]]
    assert [v["number"] for v in versions] == [2, 1]
    for version, path in zip(versions, (second_zip, first_zip)):
        data = path.read_bytes()
        assert version["sha256"] == hashlib.sha256(data).hexdigest()
        assert version["size"] == len(data)
        assert version["uploadedBy"] == "alice"
        assert version["pythonVersion"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
        stored = local_server.data_dir / "versions" / f"{version['versionId']}.zip"
        assert stored.read_bytes() == data
    assert [v["description"] for v in versions] == ["second", "first"]
    models = _ok(local_server.request("POST", "/model/list"))
    assert [(m["name"], m["id"]) for m in models] == [("Mover", first["modelId"])]
    assert not list((local_server.data_dir / "tmp").iterdir())
    with sqlite3.connect(local_server.data_dir / "blankly.db") as conn:
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            conn.execute("UPDATE versions SET sha256 = 'x'")


def test_everything_survives_a_restart(server_factory, tmp_path):
    server = server_factory()
    project = _ok(server.request("POST", "/project/create", data={"name": "Kept"}))
    upload = _ok(_upload(server, write_model_zip(tmp_path / "m.zip"), projectId=project["id"], name="Kept model"))
    before = server.snapshot()
    refresh = server.refresh_token()
    server.restart()
    assert server.snapshot().rows == before.rows
    assert requests.post(f"{server.url}/auth/token", data={"refreshToken": refresh}, timeout=30).ok
    models = _ok(server.request("POST", "/model/list", data={"projectId": project["id"]}))
    assert [m["id"] for m in models] == [upload["modelId"]]
    versions = _ok(server.request("GET", "/model/versions", params={"modelId": upload["modelId"]}))
    assert [v["versionId"] for v in versions] == [upload["versionId"]]


# -- running --------------------------------------------------------------------------------


def test_deploy_runs_the_model_logs_grow_and_kill_stops_it(local_server, tmp_path):
    zip_path = write_model_zip(tmp_path / "ticker.zip", files={"bot.py": TICKER})
    deployed = _ok(_upload(local_server, zip_path, route="/model/deploy", name="Ticker", plan="nano"))
    model_id = deployed["modelId"]
    running = _wait_state(local_server, model_id, "running")
    assert running["versionId"] == deployed["versionId"] and running["plan"] == "nano"
    assert psutil.pid_exists(running["pid"])

    def log_from(offset, text):
        def check():
            out = _ok(local_server.request("GET", "/model/logs", params={"modelId": model_id, "offset": offset}))
            return out if text in out["text"] else None
        return check

    first = wait_for(log_from(0, "tick 1"), "the model's log to show tick 1")
    assert first["offset"] == len(first["text"].encode()) <= first["size"]
    # Following the log from the last offset gives only what came after.
    later = wait_for(log_from(first["offset"], "tick"), "more log lines")
    assert "tick 0" not in later["text"] and later["offset"] > first["offset"]
    status = _ok(local_server.request("GET", "/model/status"))
    assert status[0]["state"] == "running" and status[0]["versionId"] == deployed["versionId"]

    killed = _ok(local_server.request("POST", "/model/kill", data={"modelId": model_id}))
    assert killed == {"status": "success", "modelId": model_id, "state": "stopped"}
    assert _deployment(local_server, model_id)["desiredState"] == "stopped"
    wait_for(lambda: not psutil.pid_exists(running["pid"]) or
             psutil.Process(running["pid"]).status() == psutil.STATUS_ZOMBIE, "the model process to end")


def test_run_starts_a_stored_version_again(local_server, tmp_path):
    zip_path = write_model_zip(tmp_path / "ticker.zip", files={"bot.py": TICKER})
    stored = _ok(_upload(local_server, zip_path, name="Stored"))
    assert _deployment(local_server, stored["modelId"])["state"] == "none"
    ran = _ok(local_server.request("POST", "/model/run", data={"modelId": stored["modelId"]}))
    assert ran["versionId"] == stored["versionId"]
    _wait_state(local_server, stored["modelId"], "running")
    _ok(local_server.request("POST", "/model/kill", data={"modelId": stored["modelId"]}))


def test_a_backtest_that_produces_no_result_fails_with_the_reason(local_server, tmp_path):
    zip_path = write_model_zip(tmp_path / "m.zip")
    answer = _ok(_upload(local_server, zip_path, route="/model/backtest",
                         backtestArgs=json.dumps({"to": "1y"}), backtestDescription="trivial"))
    assert answer["backtestId"] and answer["versionId"] and answer["modelId"]
    done = _backtest_done(local_server, answer["backtestId"])
    assert done["status"] == "failed" and "no backtest result" in done["error"]
    assert done["args"] == {"to": "1y"} and done["description"] == "trivial"
    assert done["startedAt"] and done["endedAt"] >= done["startedAt"]
    logs = _ok(local_server.request("GET", "/backtest/logs", params={"backtestId": answer["backtestId"]}))
    assert "hello from a trivial model" in logs["text"] and logs["complete"] is True
    result = _ok(local_server.request("GET", "/backtest/result", params={"backtestId": answer["backtestId"]}))
    assert result["result"] is None and result["status"] == "failed"
    listed = _ok(local_server.request("GET", "/model/backtests", params={"modelId": answer["modelId"]}))
    assert [b["backtestId"] for b in listed] == [answer["backtestId"]]


def _rsi_zip(path: Path) -> Path:
    script = "\n".join([RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, """
if blankly.is_deployed:
    strategy.start()
else:
    strategy.backtest(initial_values={"USD": 10000}, to="1y")
"""])
    notebooks = REPO / "notebooks"
    return write_model_zip(
        path,
        files={
            "bot.py": script,
            "requirements.txt": "blankly\n",
            "GOOG-USD-1d.csv": PRICES_CSV.read_text(),
            "settings.json": (notebooks / "settings.json").read_text(),
            "backtest.json": (notebooks / "backtest.json").read_text(),
        },
    )


@pytest.mark.slow
def test_an_rsi_backtest_completes_and_its_result_comes_back(local_server, tmp_path):
    answer = _ok(_upload(local_server, _rsi_zip(tmp_path / "rsi.zip"), route="/model/backtest",
                         name="RSI", backtestArgs=json.dumps(RSI_BACKTEST_ARGS)))
    done = _backtest_done(local_server, answer["backtestId"])
    assert done["status"] == "completed", done
    assert done["exitCode"] == 0 and done["error"] is None
    result = _ok(local_server.request("GET", "/backtest/result", params={"backtestId": answer["backtestId"]}))["result"]
    assert result["metrics"] and result["accountValues"]
    assert result["initialAccountValue"] and result["finalAccountValue"] is not None
    assert set(result["accountValues"][0]) >= {"time", "value"}
    assert result["symbols"] == ["GOOG-USD"]

    # The stored version can be backtested again with other args, without uploading.
    again = _ok(local_server.request(
        "POST", "/model/backtestUploadedModel",
        json={"projectId": local_server.user_id(), "modelId": answer["modelId"],
              "versionId": answer["versionId"], "backtestDescription": "more cash",
              "backtestArgs": {**RSI_BACKTEST_ARGS, "initial_values": {"USD": 20000}}},
    ))
    assert again["versionId"] == answer["versionId"] and again["backtestId"] != answer["backtestId"]
    second = _backtest_done(local_server, again["backtestId"])
    assert second["status"] == "completed", second
    other = _ok(local_server.request("GET", "/backtest/result", params={"backtestId": again["backtestId"]}))["result"]
    assert other["initialAccountValue"] != result["initialAccountValue"]


def test_cancel_stops_a_running_backtest(local_server, tmp_path):
    zip_path = write_model_zip(tmp_path / "sleep.zip", files={"bot.py": SLEEPER})
    answer = _ok(_upload(local_server, zip_path, route="/model/backtest"))
    backtest_id = answer["backtestId"]
    wait_for(lambda: _ok(local_server.request("GET", "/backtest/status", params={"backtestId": backtest_id}))["status"] == "running",
             "the backtest to start")
    _ok(local_server.request("POST", "/backtest/cancel", data={"backtestId": backtest_id}))
    done = _backtest_done(local_server, backtest_id)
    assert done["status"] == "cancelled" and "cancelled" in done["error"]


def test_delete_removes_the_model_its_versions_files_and_backtests(local_server, tmp_path):
    zip_path = write_model_zip(tmp_path / "ticker.zip", files={"bot.py": TICKER})
    deployed = _ok(_upload(local_server, zip_path, route="/model/deploy", name="Doomed"))
    model_id = deployed["modelId"]
    _ok(_upload(local_server, zip_path, route="/model/backtest", modelId=model_id))
    running = _wait_state(local_server, model_id, "running")
    assert _ok(local_server.request("POST", "/model/delete", data={"modelId": model_id})) == {
        "status": "success", "modelId": model_id}
    assert not list((local_server.data_dir / "versions").iterdir())
    gone = local_server.request("GET", "/model/versions", params={"modelId": model_id})
    assert gone.status_code == 404
    snap = local_server.snapshot()
    for table in ("models", "versions", "backtests", "deployments"):
        assert not snap.rows[table], table
    wait_for(lambda: not psutil.pid_exists(running["pid"]) or
             psutil.Process(running["pid"]).status() == psutil.STATUS_ZOMBIE, "the model process to end")


def test_after_a_crash_unfinished_backtests_fail_and_live_models_restart(server_factory, tmp_path):
    server = server_factory()
    live = _ok(_upload(server, write_model_zip(tmp_path / "t.zip", files={"bot.py": TICKER}),
                       route="/model/deploy", name="Survivor"))
    before = _wait_state(server, live["modelId"], "running")
    slow = _ok(_upload(server, write_model_zip(tmp_path / "s.zip", files={"bot.py": SLEEPER}),
                       route="/model/backtest", name="Slow"))
    wait_for(lambda: _ok(server.request("GET", "/backtest/status", params={"backtestId": slow["backtestId"]}))["status"] == "running",
             "the backtest to start")
    server.kill()  # SIGKILL: no shutdown code runs
    server.start()
    status = _ok(server.request("GET", "/backtest/status", params={"backtestId": slow["backtestId"]}))
    assert status["status"] == "failed"
    assert "server" in status["error"] and ("restart" in status["error"] or "stopped" in status["error"])
    after = _wait_state(server, live["modelId"], "running")
    assert after["pid"] != before["pid"]
    wait_for(lambda: not psutil.pid_exists(before["pid"]) or
             psutil.Process(before["pid"]).status() == psutil.STATUS_ZOMBIE,
             "the crashed server's model process to be stopped")


# -- crash safety ---------------------------------------------------------------------------


def test_a_crash_mid_upload_leaves_nothing_after_restart(server_factory, tmp_path):
    from requests_toolbelt import MultipartEncoder

    server = server_factory()
    headers = server.headers()
    before = server.snapshot()
    data = write_model_zip(tmp_path / "big.zip", files={"data.bin": os.urandom(4 << 20)}).read_bytes()
    body = MultipartEncoder({"name": "half", "model": ("big.zip", data, "application/zip")})
    first = body.read(2 << 20)
    proceed = threading.Event()
    failures: list[Exception] = []

    def chunks():
        yield first
        proceed.wait(60)  # hold the rest back until the server is dead
        yield from iter(lambda: body.read(1 << 16), b"")

    def post():
        try:
            requests.post(f"{server.url}/model/upload", data=chunks(), timeout=60,
                          headers={**headers, "content-type": body.content_type})
        except requests.RequestException as exc:
            failures.append(exc)

    sender = threading.Thread(target=post)
    sender.start()
    tmp_dir = server.data_dir / "tmp"
    wait_for(lambda: any(p.stat().st_size > 0 for p in tmp_dir.iterdir()), "the upload to reach disk")
    server.kill()
    proceed.set()
    sender.join(60)
    assert failures, "the client must see the upload fail"
    assert list(tmp_dir.iterdir()), "a partial upload was on disk when the server died"

    server.start()
    assert not list(tmp_dir.iterdir())
    assert before.diff(server.snapshot()) == {}
    retry = _ok(_upload(server, tmp_path / "big.zip", name="whole"))
    stored = server.data_dir / "versions" / f"{retry['versionId']}.zip"
    assert stored.read_bytes() == data


def test_startup_removes_version_files_no_row_records(server_factory, tmp_path):
    server = server_factory()
    kept = _ok(_upload(server, write_model_zip(tmp_path / "m.zip")))
    server.stop()
    # What a crash between moving a zip into place and committing its row leaves behind.
    stray = server.data_dir / "versions" / "0123456789abcdef0123456789abcdef.zip"
    stray.write_bytes(b"PK\x05\x06" + bytes(18))
    (server.data_dir / "tmp" / "upload-x.part").write_bytes(b"partial")
    server.start()
    assert not stray.exists()
    assert not list((server.data_dir / "tmp").iterdir())
    assert (server.data_dir / "versions" / f"{kept['versionId']}.zip").exists()


def test_an_upload_cancelled_while_its_zip_is_written_leaves_no_file(tmp_path):
    """A request cancelled (say, at shutdown) while the writer thread still works on its
    zip cleans up at once; what the writer placed after that is removed when it ends."""
    import asyncio

    from blankly_magics.server import uploads

    release = threading.Event()

    class SlowJob(uploads._Job):
        def do(self) -> None:
            release.wait(60)  # the request is cancelled meanwhile
            super().do()

    (tmp_path / "tmp").mkdir()
    (tmp_path / "versions").mkdir()
    upload = uploads.Upload(data=b"PK\x05\x06" + bytes(18), path=tmp_path / "tmp" / "upload-1.part")
    final = tmp_path / "versions" / "v.zip"
    writer = uploads.Writer()

    async def request() -> None:
        try:
            await writer.run(SlowJob(upload.path, final, upload.data))
        finally:
            upload.discard()  # what _accept_upload does on the way out
            final.unlink(missing_ok=True)

    async def cancel_it() -> None:
        task = asyncio.ensure_future(request())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.get_running_loop().run_in_executor(None, writer.close)
        await asyncio.sleep(0)  # the writer's last word runs on the loop

    try:
        asyncio.run(cancel_it())
    finally:
        release.set()
    assert not list((tmp_path / "tmp").iterdir()) and not list((tmp_path / "versions").iterdir())


def test_the_database_file_catches_up_with_its_wal_without_a_commit_waiting(tmp_path):
    """The server's store checkpoints from a thread of its own: no commit does it (on the
    server that would stall the event loop), yet committed rows reach the database file,
    every one of them within seconds of the last write (the thread's periodic pass)."""
    import shutil
    from contextlib import closing

    from blankly_magics.server.store import CHECKPOINT_COMMITS, DB_NAME, Store

    store = Store(tmp_path / "data", background_checkpoints=True)
    try:
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        user = store.ensure_user("alice")
        for i in range(CHECKPOINT_COMMITS):
            store.create_project(user.id, f"p{i}", "")

        def in_the_database_file() -> bool:
            copy = tmp_path / "copy.db"  # the file alone, without its WAL
            shutil.copyfile(tmp_path / "data" / DB_NAME, copy)
            try:
                with closing(sqlite3.connect(copy)) as conn:
                    return conn.execute("SELECT COUNT(*) FROM projects").fetchone()[0] == CHECKPOINT_COMMITS + 1
            except sqlite3.DatabaseError:  # copied mid-checkpoint: look again
                return False

        wait_for(in_the_database_file, "the checkpoint to copy the commits into the database file", timeout=60)
    finally:
        store.close()
    assert not (tmp_path / "data" / (DB_NAME + "-wal")).exists()  # closed cleanly: the WAL was folded in
    with Store(tmp_path / "data") as reopened:
        assert len(reopened.list_projects(user.id)) == CHECKPOINT_COMMITS + 1


def test_an_upload_streams_to_disk_instead_of_memory(local_server, tmp_path):
    from requests_toolbelt import MultipartEncoder

    payload = tmp_path / "payload.bin"
    with open(payload, "wb") as fh:
        for _ in range(64):
            fh.write(os.urandom(1 << 20))
    zip_path = write_model_zip(tmp_path / "big.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.write(payload, "model/payload.bin")
    process = psutil.Process(local_server.proc.pid)
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def watch():
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with open(zip_path, "rb") as fh:
            body = MultipartEncoder({"model": ("big.zip", fh, "application/zip")})
            answer = local_server.request(
                "POST", "/model/upload", data=body, headers={"content-type": body.content_type}
            )
    finally:
        done.set()
        watcher.join()
    _ok(answer)
    # 64 MB went through; the server grew by far less than that.
    assert peak[0] - baseline < 16 << 20, (baseline, peak[0])


def test_no_secret_reaches_the_server_log(server_factory, tmp_path):
    server = server_factory(args=["--log-level", "debug"])
    refresh = server.refresh_token()
    id_token = server.id_token()
    keys = _ok(server.request("POST", "/project/generate-project-token", data={"name": "k"}))
    _ok(_upload(server, write_model_zip(tmp_path / "m.zip"), route="/model/backtest"))
    server.request("GET", "/project/list", user=None, headers={"token": id_token + "x"})
    _ok(server.request("POST", "/auth/logout", data={"refreshToken": refresh}))
    server.stop()
    log = server.log(tail=0)
    assert "GET /project/list" in log  # the log is really there, at debug level
    for secret in (refresh, id_token, keys["apiPass"]):
        assert secret not in log
