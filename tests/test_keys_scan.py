"""Exchange keys stored on the server reach the owner's live run and nothing else.

The path a user takes: a notebook folder holding a keys.json with (fake) real keys;
``%blankly keys import keys.json``, ``%blankly keys set`` (the values typed at a hidden
prompt), ``%blankly keys``; ``%%blankly_deploy`` of a live model whose script prints a
hash of the API secret it finds in its keys.json (the exporter left the file out of
the zip); a second user (made with ``token --user``) deploys the very same zip and
finds none; ``%blankly keys delete``, and a run started after finds none either.

Then everything is scanned for every value: each cell's output, every answer the
client received, the server's console log (debug level), every file of the data dir
(database, WAL, key file, run logs, reports, stored version zips with their members)
and the zip the cell saved. None may hold a value in clear.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from blankly_magics import session as sessions
from tests.fixtures_notebooks import write_notebook
from tests.fixtures_server import wait_for
from tests.magics_shell import Cells
from tests.test_secrets_scan import _files_text

FAKE_KEY = "PKSTOREDKEY7Q2W3E4R5T6Y"
FAKE_SECRET = "storedSecretZx9Cv8Bn7Mm6Ll5Kk4Jj3Hh2"
TYPED = {"API_KEY": "typedKeyAa1Bb2Cc3Dd4", "API_SECRET": "typedSecretEe5Ff6Gg7Hh8", "API_PASS": "typedPassIi9Jj0"}
READER = '''#| blankly
import hashlib, json, time


def keys_digest():
    try:
        data = json.load(open("keys.json"))
    except FileNotFoundError:
        return "no keys.json"
    secret = data.get("alpaca", {}).get("main", {}).get("API_SECRET") or ""
    return hashlib.sha256(secret.encode()).hexdigest() if secret.strip("*") else "no alpaca secret"
'''
ENTRY = 'print("KEYS", keys_digest(), flush=True)\nwhile True:\n    time.sleep(0.5)\n'


def keys_line(server: Any, user: str, model_id: str) -> str:
    def found() -> str | None:
        text = server.request("GET", "/model/logs", user=user, params={"modelId": model_id}).json()["text"]
        return next((ln.split(" ", 1)[1] for ln in text.splitlines() if ln.startswith("KEYS ")), None)

    return wait_for(found, f"{user}'s model to say what keys it has", 120)


@pytest.mark.slow
@pytest.mark.blankly
def test_stored_keys_reach_the_owners_run_only_and_no_value_shows_anywhere(
    cells: Cells, server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    server = server_factory(args=["--log-level", "debug"])
    for user in ("alice", "mallory"):
        assert server.token_command(user).returncode == 0
    monkeypatch.setenv("ALICE_TOKEN", server.refresh_token("alice"))
    cells.secrets.add(server.refresh_token("alice"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "keys.json").write_text(json.dumps({"alpaca": {
        "main": {"API_KEY": FAKE_KEY, "API_SECRET": FAKE_SECRET, "sandbox": True},
        "spare": {"API_KEY": "*****", "API_SECRET": "*****", "sandbox": True}}}))
    nb = write_notebook(work / "keyed.ipynb", [READER])
    saved = tmp_path / "out" / "model.zip"
    saved.parent.mkdir()

    answers: list[str] = []
    cells.run(f"%blankly_login --url {server.url} --token-env ALICE_TOKEN")
    sessions.current().client._http.hooks["response"].append(lambda response, *a, **k: answers.append(response.text))

    imported = cells.run(f"%blankly keys import {work / 'keys.json'}")
    assert imported == (f"Stored on the server from {work / 'keys.json'}: alpaca/main; "
                        "skipped (only ***** placeholders): alpaca/spare\n")
    prompts: list[str] = []
    monkeypatch.setattr(getpass, "getpass", lambda label: prompts.append(label) or TYPED[label.split()[-1][:-1]])
    typed = cells.run("%blankly keys set coinbase_pro desk")
    assert prompts == ["coinbase_pro/desk API_KEY: ", "coinbase_pro/desk API_SECRET: ", "coinbase_pro/desk API_PASS: "]
    assert typed == "Stored on the server from what you typed: coinbase_pro/desk\n"
    listed = cells.run("%blankly keys")
    assert "Stored exchange keys (2)" in listed and "API_KEY, API_SECRET, sandbox" in listed
    assert "API_KEY, API_PASS, API_SECRET, sandbox" in listed and "coinbase_pro  desk" in listed

    out = cells.run(f"%%blankly_deploy --notebook {nb} --name keyed --save {saved}\n{ENTRY}")
    assert "left out keys.json: it holds real-looking exchange keys; `%blankly keys import keys.json`" in out
    alice_model = cells.last.model_id
    assert keys_line(server, "alice", alice_model) == hashlib.sha256(FAKE_SECRET.encode()).hexdigest()

    with open(saved, "rb") as fh:  # the same zip, as another user
        answer = server.request("POST", "/model/deploy", user="mallory", data={
            "plan": "nano", "name": "keyed", "createNew": "true"}, files={"model": ("m.zip", fh, "application/zip")})
    mallory_model = answer.json()["modelId"]
    assert keys_line(server, "mallory", mallory_model) == "no keys.json"

    cells.run(f"%blankly stop --model {alice_model}")
    assert cells.run("%blankly keys delete alpaca") == "Deleted from the server: alpaca/main\n"
    assert "alpaca" not in cells.run("%blankly keys").split("Stored exchange keys (1)")[1]
    again = cells.run(f"%%blankly_deploy --notebook {nb} --name keyed\n{ENTRY}")
    assert re.search(rf"Uploading to model keyed \({alice_model}\)", again), again
    # Its keys.json holds what is still stored (coinbase_pro/desk), nothing of alpaca's.
    wait_for(lambda: keys_line(server, "alice", alice_model) == "no alpaca secret", "the run after the delete")
    for user, model in (("alice", alice_model), ("mallory", mallory_model)):
        assert server.request("POST", "/model/kill", user=user, data={"modelId": model}).ok
    cells.run("%blankly keys delete coinbase_pro desk")
    cells.run("%blankly_logout")

    server.stop()  # flush and close its log
    sources: dict[str, bytes] = {f"cell output {i}": text.encode() for i, text in enumerate(cells.seen)}
    sources.update({f"server answer {i}": text.encode() for i, text in enumerate(answers)})
    sources["server console log"] = server.log(tail=0).encode()
    sources.update(_files_text(server.data_dir))
    sources.update(_files_text(saved.parent))
    assert any("versions" in name and "!" in name for name in sources) and len(answers) >= 10
    values = {"imported key": FAKE_KEY, "imported secret": FAKE_SECRET,
              **{f"typed {name}": value for name, value in TYPED.items()}}
    leaks = [f"{what} in {where}" for where, data in sources.items() for what, value in values.items()
             if value.encode() in data]
    assert not leaks, leaks
