"""A scan of everything a representative session leaves behind, for every secret it used.

The path: sign in with a refresh token from an environment variable, build and upload a real
RSI backtest from a notebook whose folder holds keys.json and blankly.json with (fake)
exchange keys and project credentials, wait for the result, read the logs, hit errors
(an unknown plan, a model that prints its whole environment, a revoked sign-in), sign out.
The server runs at debug log level with a secret-looking variable in its environment.

Collected: every cell's output, every HTTP answer the client received, the server's console
log, every file in the server's data dir (database, logs, reports, stored zips), the zip the
cell saved, exception texts and the reprs and HTML of what the cells returned. None may hold
a refresh token, an idToken, an exchange key or secret, an api_pass, or the server's secret
environment variable. The token file is 0600 and the data dir is not readable by others.
"""
from __future__ import annotations

import json
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from blankly_magics import session as sessions
from tests.fixtures_notebooks import PRICES_CSV, RSI_ENTRY, RSI_IMPORTS, RSI_LOGIC, RSI_SETUP, write_notebook
from tests.reliability import record
from tests.magics_shell import Cells

FAKE_KEY = "PKFAKEKEY7Q2W3E4R5T6Y7U8"
FAKE_SECRET = "fakeSecretZx9Cv8Bn7Mm6Ll5Kk4Jj3Hh2Gg1Ff0Dd"
FAKE_PASS = "fakePassphraseQ1w2E3r4"
FAKE_API_PASS = "projPassAa1Bb2Cc3Dd4Ee5Ff6"
SERVER_ENV_SECRET = "serverEnvSecretYy7Uu8Ii9Oo0"
PRINT_ENV = "#| blankly\nimport os\nprint('model environment:', sorted(os.environ.items()))\n"


def _files_text(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (zips opened: their members too)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        out[str(path)] = data
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    out[f"{path}!{name}"] = zf.read(name)
    return out


@pytest.mark.slow
def test_no_secret_appears_in_anything_a_session_leaves_behind(
    cells: Cells, server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path  # noqa: F811
) -> None:
    monkeypatch.setenv("EXCHANGE_API_KEY", SERVER_ENV_SECRET)  # inherited by the server: must not reach models
    server = server_factory(args=["--log-level", "debug"])
    monkeypatch.delenv("EXCHANGE_API_KEY")
    token = server.refresh_token("alice")
    monkeypatch.setenv("ALICE_TOKEN", token)

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(PRICES_CSV, work / PRICES_CSV.name)
    (work / "keys.json").write_text(json.dumps({"coinbase_pro": {"main": {
        "API_KEY": FAKE_KEY, "API_SECRET": FAKE_SECRET, "API_PASS": FAKE_PASS, "sandbox": False}}}))
    (work / "blankly.json").write_text(json.dumps({"api_key": FAKE_KEY, "api_pass": FAKE_API_PASS}))
    nb = write_notebook(work / "rsi.ipynb", [RSI_IMPORTS, PRINT_ENV, RSI_LOGIC, RSI_SETUP])
    saved = work / "out" / "model.zip"
    saved.parent.mkdir()

    answers: list[str] = []
    id_tokens: set[str] = set()

    def keep(response: Any, *args: Any, **kwargs: Any) -> None:
        if response.request.path_url.startswith("/auth/token"):
            id_tokens.add(response.json().get("idToken", ""))  # the one answer that must carry it
        else:
            answers.append(response.text)

    assert cells.run(f"%blankly_login --url {server.url} --token-env ALICE_TOKEN") == (
        f"Signed in to {server.url} as alice\n")
    token_file = isolated / ".local" / "share" / "blankly" / "auth.json"  # shared with the Blankly CLI
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    session = sessions.current()
    session.client._http.hooks["response"].append(keep)
    id_tokens.add(session.client._id_token.reveal())

    out = cells.run(f"%%blankly_deploy --backtest --notebook {nb} --save {saved} --initial USD=10000 "
                    f"--start 2010-06-01 --end 2013-03-01\n{RSI_ENTRY}")
    result = cells.last
    assert result.status == "completed", out
    assert "left out keys.json" in out  # the user is told why the keys stayed home
    cells.run(f"%blankly logs --backtest {result.backtest_id} --tail 0")
    assert "model environment:" in cells.seen[-1]  # the model really printed its environment
    cells.run(f"%blankly result {result.backtest_id}")
    cells.run("%blankly models")
    failures = [cells.fails(f"%%blankly_deploy --backtest --notebook {nb} --plan huge\n{RSI_ENTRY}")]
    shown = [repr(session), str(session), repr(session.client), repr(result), result.to_html(), out]

    # a revoked sign-in: the server's refusals, the client's exception, the magic's line
    server.request("POST", "/auth/logout", user=None, headers={"token": session.client._id_token.reveal()},
                   data={"refreshToken": token})
    with pytest.raises(Exception) as caught:
        session.client.projects()
    failures += [str(caught.value), repr(caught.value), cells.fails("%blankly projects")]
    cells.run("%blankly_logout")

    server.stop()  # flush and close its log
    sources: dict[str, bytes] = {f"cell output {i}": text.encode() for i, text in enumerate(cells.seen)}
    sources.update({f"server answer {i}": text.encode() for i, text in enumerate(answers)})
    sources.update({f"shown {i}": text.encode() for i, text in enumerate(shown + failures)})
    sources["server console log"] = server.log(tail=0).encode()
    sources.update(_files_text(server.data_dir))
    sources.update(_files_text(saved.parent))
    secrets = {"refresh token": token, "exchange key": FAKE_KEY, "exchange secret": FAKE_SECRET,
               "exchange passphrase": FAKE_PASS, "project api_pass": FAKE_API_PASS,
               "server environment secret": SERVER_ENV_SECRET}
    secrets.update({f"idToken {i}": t for i, t in enumerate(sorted(id_tokens)) if t})
    assert len(answers) >= 10 and any("versions" in name for name in sources)  # the scan saw real material
    leaks = [f"{what} in {where}" for where, data in sources.items()
             for what, secret in secrets.items() if secret.encode() in data]
    assert not leaks, leaks

    # the token file and the data dir: for their owner only
    assert not token_file.exists()  # %blankly_logout removed it
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    for path in [server.data_dir, *server.data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir() or path.name in ("blankly.db", "blankly.db-wal", "blankly.db-shm", "signing.key"):
            assert mode & 0o077 == 0, (path, oct(mode))
    record("secrets", "login, build, upload, real RSI backtest, logs, errors, revoked sign-in, logout",
           what="token file 0600; no refresh token, idToken, exchange key/secret/passphrase, api_pass or server env secret in "
                "cell outputs, server answers, server log, data dir files, the saved zip, exceptions or reprs; "
                "data dir and its folders 0700, database and signing key 0600",
           secrets=len(secrets), sources_scanned=len(sources), answers_scanned=len(answers),
           bytes_scanned=sum(len(d) for d in sources.values()))

