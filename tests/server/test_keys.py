"""Exchange keys kept by the server: stored sealed per user, listed by name, handed to the owner's runs only.

One real server with runs confined (bubblewrap), two users made with the ``token --user``
command as an operator makes them. Each user's models are tiny scripts that say what
keys.json holds in their working directory (a hash of the secret, never the secret),
and search every file they can open for the other user's secret.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.fixtures_server import ServerHandle, serving, wait_for, write_model_zip

ALICE_KEY = "PKALICEKEY7Q2W3E4R5T6Y"
ALICE_SECRET = "aliceSecretZx9Cv8Bn7Mm6Ll5Kk4Jj3"
ALICE_PASS = "alicePassphraseQ1w2E3r4"
PLACEHOLDER = "*" * 20

# Says what keys.json holds (a hash, never a value), then searches every file it can open
# for the other user's secret, given reversed so that the script itself holds none of it.
KEY_PROBE = r'''
import hashlib, json, os, sys, time
REVERSED = {reversed!r}
def seen():
    try:
        data = json.load(open("keys.json"))
    except FileNotFoundError:
        return "none", []
    secret = data.get("alpaca", {{}}).get("main", {{}}).get("API_SECRET")
    shown = hashlib.sha256(secret.encode()).hexdigest() if secret and "*" not in secret else "none"
    return shown, sorted("%s/%s" % (e, p) for e, ps in data.items() for p in ps)
digest, portfolios = seen()
hits = []
for root, dirs, files in os.walk("/"):
    if root.startswith(("/proc", "/sys", "/dev", "/usr", os.path.realpath(sys.base_prefix))):
        dirs[:] = []
        continue
    for name in files:
        try:
            with open(os.path.join(root, name), "rb") as fh:
                if REVERSED[::-1].encode() in fh.read(1 << 20):
                    hits.append(os.path.join(root, name))
        except OSError:
            pass
print("PROBE " + json.dumps({{"secret": digest, "portfolios": portfolios, "hits": hits}}), flush=True)
while {live}:
    time.sleep(0.5)
'''


def alice_keys() -> dict:
    return {"alpaca": {"main": {"API_KEY": ALICE_KEY, "API_SECRET": ALICE_SECRET, "sandbox": True},
                       "paper": {"API_KEY": PLACEHOLDER, "API_SECRET": PLACEHOLDER, "sandbox": True}},
            "coinbase_pro": {"desk": {"API_KEY": ALICE_KEY[::-1], "API_SECRET": ALICE_SECRET[::-1],
                                      "API_PASS": ALICE_PASS}}}


def probe_zip(path: Path, live: bool) -> Path:
    placeholders = {"alpaca": {"main": {"API_KEY": PLACEHOLDER, "API_SECRET": PLACEHOLDER, "sandbox": True},
                               "spare": {"API_KEY": PLACEHOLDER, "API_SECRET": PLACEHOLDER, "sandbox": True}}}
    script = KEY_PROBE.format(reversed=ALICE_SECRET[::-1], live=live)
    return write_model_zip(path, files={"bot.py": script, "keys.json": json.dumps(placeholders)})


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with serving(tmp_path_factory.mktemp("keys"), ("alice", "mallory"), ["--max-workers", "2", "--log-level",
                                                                         "debug"]) as handle:
        yield handle


def probe_output(server: ServerHandle, user: str, route: str, params: dict) -> dict:
    def found() -> dict | None:
        text = server.request("GET", route, user=user, params=params).json()["text"]
        line = next((ln for ln in text.splitlines() if ln.startswith("PROBE ")), None)
        return json.loads(line[len("PROBE "):]) if line else None

    return wait_for(found, f"{user}'s probe on {route}", 120)


def deploy(server: ServerHandle, user: str, zip_path: Path, name: str) -> str:
    with open(zip_path, "rb") as fh:
        answer = server.request("POST", "/model/deploy", user=user, data={"plan": "nano", "name": name,
                                "createNew": "true"}, files={"model": ("model.zip", fh, "application/zip")})
    assert answer.status_code == 200, answer.text
    return answer.json()["modelId"]


def kill(server: ServerHandle, user: str, model_id: str) -> None:
    assert server.request("POST", "/model/kill", user=user, data={"modelId": model_id}).ok


def test_keys_are_stored_for_their_owner_and_listed_by_name_only(server: ServerHandle) -> None:
    answer = server.request("POST", "/keys/set", user="alice", json={"keys": alice_keys()})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "success", "skipped": [{"exchange": "alpaca", "portfolio": "paper"}],
                             "stored": [{"exchange": "alpaca", "portfolio": "main"},
                                        {"exchange": "coinbase_pro", "portfolio": "desk"}]}
    listed = server.request("GET", "/keys/list", user="alice")
    assert [(k["exchange"], k["portfolio"], k["fields"], k["sandbox"]) for k in listed.json()["keys"]] == [
        ("alpaca", "main", ["API_KEY", "API_SECRET", "sandbox"], True),
        ("coinbase_pro", "desk", ["API_KEY", "API_PASS", "API_SECRET"], None)]
    assert server.request("GET", "/keys/list", user="mallory").json() == {"keys": []}
    refused = server.request("POST", "/keys/delete", user="mallory", data={"exchange": "alpaca"})
    assert refused.status_code == 404 and refused.json() == {"error": "no stored keys for alpaca"}

    # Refusals name the exchange, portfolio or field, never a value.
    for bad, says in (({"alpaca": {"main": {"API KEY": ALICE_SECRET}}}, "alpaca/main has a field named 'API KEY'"),
                      ({"alpaca": {"main": {"API_KEY": [ALICE_SECRET]}}}, "alpaca/main field API_KEY must be text"),
                      ({"alpaca": {"main": {"API_KEY": ALICE_SECRET * 400}}}, "longer than 8192 characters"),
                      ({"alpaca": {"main": {"API_KEY": PLACEHOLDER}}}, "nothing to store"),
                      ({"alpaca": ALICE_SECRET}, "alpaca must be an object of portfolios")):
        answer = server.request("POST", "/keys/set", user="alice", json={"keys": bad})
        assert answer.status_code == 400 and says in answer.json()["error"], answer.text
        assert ALICE_SECRET not in answer.text
    assert len(server.request("GET", "/keys/list", user="alice").json()["keys"]) == 2  # nothing half-stored

    key_file = server.data_dir / "exchange-keys.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for path in server.data_dir.rglob("*"):  # the database, its WAL, the key file: no value in clear
        if path.is_file():
            data = path.read_bytes()
            assert not any(v.encode() in data for v in (ALICE_KEY, ALICE_SECRET, ALICE_PASS)), path


def test_a_run_gets_its_owners_keys_over_the_zips_placeholders_and_nobody_elses(
        server: ServerHandle, tmp_path: Path) -> None:
    server.request("POST", "/keys/set", user="alice", json={"keys": alice_keys()}).raise_for_status()
    live_zip = probe_zip(tmp_path / "live.zip", live=True)
    alice = deploy(server, "alice", live_zip, "alice-live")
    seen = probe_output(server, "alice", "/model/logs", {"modelId": alice})
    assert seen["secret"] == digest(ALICE_SECRET)
    assert seen["portfolios"] == ["alpaca/main", "alpaca/spare", "coinbase_pro/desk"]  # merged over the zip's
    placed = server.data_dir / "runs" / "live" / alice / "model" / "keys.json"
    info = placed.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and (info.st_uid != 0 or os.geteuid() != 0)  # the run's own

    mallory = deploy(server, "mallory", live_zip, "mallory-live")
    theirs = probe_output(server, "mallory", "/model/logs", {"modelId": mallory})
    assert theirs == {"secret": "none", "portfolios": ["alpaca/main", "alpaca/spare"], "hits": []}

    with open(probe_zip(tmp_path / "once.zip", live=False), "rb") as fh:  # a backtest of alice's gets them too
        answer = server.request("POST", "/model/backtest", user="alice", data={
            "plan": "small", "name": "alice-backtest", "createNew": "true", "backtestArgs": "{}"},
            files={"model": ("model.zip", fh, "application/zip")})
    backtest = answer.json()["backtestId"]
    assert probe_output(server, "alice", "/backtest/logs", {"backtestId": backtest})["secret"] == digest(ALICE_SECRET)

    kill(server, "alice", alice)
    kill(server, "mallory", mallory)
    assert not placed.exists()  # gone with the run's process
    wait_for(lambda: server.request("GET", "/backtest/status", user="alice", params={"backtestId": backtest})
             .json()["status"] in ("completed", "failed"), "alice's backtest to end")
    assert not (server.data_dir / "runs" / "backtests" / backtest / "model").exists()

    # Deleted keys: a run started after finds the zip's placeholders only.
    assert server.request("POST", "/keys/delete", user="alice", data={"exchange": "alpaca"}).json()["deleted"] == [
        {"exchange": "alpaca", "portfolio": "main"}]
    assert server.request("POST", "/model/run", user="alice", data={"modelId": alice}).ok
    again = wait_for(lambda: (seen := probe_output(server, "alice", "/model/logs", {"modelId": alice}))["secret"]
                     == "none" and seen, "the probe started after the delete")  # the last run's log goes first
    assert again["portfolios"] == ["alpaca/main", "alpaca/spare", "coinbase_pro/desk"]
    kill(server, "alice", alice)
    server.request("POST", "/keys/delete", user="alice", data={"exchange": "coinbase_pro"}).raise_for_status()

    logs = server.log(0) + "".join(p.read_text(errors="replace") for p in server.data_dir.rglob("output.log"))
    assert ALICE_SECRET not in logs and ALICE_KEY not in logs and "PROBE" in logs


def rotate(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blankly_magics.server", "rotate-exchange-key", "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=120)


def test_the_key_file_rotates_and_a_missing_or_open_one_is_refused(server_factory, tmp_path: Path) -> None:
    first = server_factory(tmp_path / "data")
    first.request("POST", "/keys/set", user="alice", json={"keys": alice_keys()}).raise_for_status()
    alice_id = first.user_id("alice")
    refused = rotate(first.data_dir)
    assert refused.returncode == 2 and "a server is using it: stop the server first" in refused.stderr
    first.stop()

    key_file = first.data_dir / "exchange-keys.key"
    before = key_file.read_bytes()
    done = rotate(first.data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"2 stored exchange key(s) encrypted again with a new key; {key_file} holds only the new key\n"
    after = key_file.read_text()
    assert after.encode() != before and len([ln for ln in after.splitlines() if not ln.startswith("#")]) == 1
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    from blankly_magics.server.keystore import open_keys
    from blankly_magics.server.store import Store

    with Store(first.data_dir) as store:  # every value opens with the new key alone
        values = open_keys(store, key_file).values(alice_id)
    assert values["alpaca"]["main"]["API_SECRET"] == ALICE_SECRET

    key_file.chmod(0o644)
    with pytest.raises(RuntimeError, match="can be read by others"):
        first.start()
    assert "chmod 600 it" in first.log()
    kept = tmp_path / "kept.key"
    key_file.rename(kept)
    with pytest.raises(RuntimeError, match="missing: restore it, or point --exchange-key-file at it"):
        first.start()
    kept.chmod(0o600)
    moved = server_factory(first.data_dir, args=["--exchange-key-file", str(kept)])  # kept apart: it opens
    assert [k["portfolio"] for k in moved.request("GET", "/keys/list", user="alice").json()["keys"]] == ["main", "desk"]
