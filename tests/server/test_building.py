"""A run whose Python environment is built first: "building" with the build's step, then the run;
pip's output stays out of the model's log (a failed build's stays in it: tests/server/runner)."""
from __future__ import annotations

from pathlib import Path

import pytest

from blankly_magics import session
from blankly_magics.workflow import Feedback
from blankly_magics.workflow.live import wait_until_started
from blankly_magics.workflow.waiting import wait_for_backtest
from tests.fixtures_server import ServerHandle, wait_for, write_model_zip
from tests.server.test_runs_http import deployment, get, upload

# Not met by this Python (six 1.17 or none is installed): the run gets a venv of its own.
NEEDS_A_BUILD = "six==1.15.0\n"
SCRIPT = "import six\nprint('six', six.__version__, flush=True)\n"
LOOP = SCRIPT + "import time\nwhile True:\n    time.sleep(1)\n"


@pytest.mark.slow
def test_a_backtest_and_a_live_model_show_their_environment_being_built(
        private_home, local_server: ServerHandle, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", local_server.refresh_token("alice"))
    signed = session.sign_in(local_server.url)
    try:
        zip_path = write_model_zip(tmp_path / "six.zip", files={"bot.py": SCRIPT, "requirements.txt": NEEDS_A_BUILD})
        ids = upload(local_server, "/model/backtest", zip_path, plan="small", name="six", createNew="true",
                     backtestArgs="{}")
        shown: list[str] = []
        result = wait_for_backtest(signed, ids["backtestId"], Feedback(status=lambda text, word: shown.append(text)))
        building = [line for line in shown if "building the environment" in line]
        assert building and any(": pip: " in line or "virtual environment" in line for line in building), shown
        assert result.done  # no Blankly backtest in it: failed, but it ran in its new environment
        log = get(local_server, "/backtest/logs", backtestId=ids["backtestId"])["text"]
        assert "six 1.15.0" in log and "built the environment in" in log
        assert "Collecting six" not in log and "Successfully installed" not in log  # pip's output: not the model's

        # A live model (another environment: its requirements differ by a comment).
        live_zip = write_model_zip(tmp_path / "live.zip",
                                   files={"bot.py": LOOP, "requirements.txt": NEEDS_A_BUILD + "# live\n"})
        deployed = upload(local_server, "/model/deploy", live_zip, plan="nano", name="six live", createNew="true")
        model_id = deployed["modelId"]
        seen = wait_for(lambda: (d := deployment(local_server, model_id))["state"] == "building" and d,
                        "the live model to be building its environment", timeout=120, poll=0.1)
        assert seen["progress"] and seen["error"] is None
        states: list[str] = []
        answer = wait_until_started(signed, model_id, Feedback(status=lambda text, word: states.append(text)))
        assert answer["state"] == "running" and answer["progress"] is None, answer
        assert any(f"Model {model_id}: building the environment" in text for text in states), states
        wait_for(lambda: "six 1.15.0" in get(local_server, "/model/logs", modelId=model_id)["text"],
                 "the live model's own output", timeout=60)
        assert "Collecting six" not in get(local_server, "/model/logs", modelId=model_id)["text"]
        local_server.request("POST", "/model/kill", data={"modelId": model_id})
    finally:
        session.sign_out(revoke=False)
