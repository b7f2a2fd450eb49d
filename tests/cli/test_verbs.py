"""``blankly-magics`` from a terminal against the real local server, as a user or a CI job runs it.

Each command is a real process (``python -m blankly_magics ...``) with no terminal on
stdin; with no ``--url`` it starts the embedded local server in the private data home
(left running between commands, stopped at the end) and signs in to it.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from blankly_magics.embedded import stop_local_server

from ..fixtures_notebooks import RSI_ENTRY, write_notebook
from ..fixtures_server import ServerHandle, wait_for

METRICS = ("Sharpe Ratio", "Compound Annual Growth Rate (%)", "Max Drawdown (%)", "Cumulative Returns (%)")
RSI_PERIOD = ("--start", "2010-06-01", "--end", "2013-03-01", "--initial", "USD=10000")
TICKER = ["#| blankly\nimport time\n",
          "%%blankly_deploy\nfor n in range(100000):\n    print(f'tick {n}', flush=True)\n    time.sleep(0.2)\n"]


@pytest.fixture
def home(private_home: Path, tmp_path: Path) -> Iterator[Path]:
    """The embedded server's data home; the server the commands started is stopped afterwards."""
    yield tmp_path / "bm"
    stop_local_server(tmp_path / "bm")


def blankly(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blankly_magics", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, env=dict(os.environ))


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """A refused command: exit code 2, nothing on stdout, one line on stderr."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "" and done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    return done.stderr[len("error: "):].rstrip("\n")


@pytest.mark.slow
def test_a_backtest_from_a_terminal_prints_the_metrics_and_the_verbs_find_it(home, rsi_notebook):
    entry = rsi_notebook.parent / "entry.py"
    entry.write_text(RSI_ENTRY)
    done = blankly("backtest", str(rsi_notebook), "--entry", str(entry), *RSI_PERIOD, "-m", "from CI")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Model from rsi.ipynb: 3 cell(s) taken (marked)" in out
    assert "Uploading to a new model 'rsi' on http://127.0.0.1:" in out
    backtest_id = re.search(r"Backtest (\w+) completed: account value 10,000 -> ", out).group(1)
    for metric in METRICS:
        assert metric in out
    assert f"More: blankly-magics result {backtest_id}" in out and "%blankly" not in out
    assert "r = _" not in out  # no Python session to hold the result in a terminal

    shown = blankly("result", backtest_id)
    assert shown.returncode == 0 and all(metric in shown.stdout for metric in METRICS), shown.stderr
    listed = blankly("backtests", "--model", "rsi")
    assert backtest_id in listed.stdout and "from CI" in listed.stdout
    again = blankly("backtest", str(rsi_notebook), "--entry", str(entry), *RSI_PERIOD, "--no-wait")
    assert again.returncode == 0, again.stderr[-3000:]
    model_id = re.search(r"Uploading to model rsi \((\w+)\)", again.stdout).group(1)  # remembered: no new model
    assert "Not waiting: fetch it with blankly-magics result " in again.stdout
    assert f"Versions of model {model_id} (2)" in blankly("versions", "--model", "rsi").stdout
    assert "Models (1)" in blankly("models").stdout and "Personal" in blankly("projects").stdout


@pytest.mark.slow
def test_deploy_status_logs_and_stop_from_a_terminal(home, tmp_path):
    notebook = write_notebook(tmp_path / "ticker.ipynb", TICKER)
    done = blankly("deploy", str(notebook), "--name", "ticker")
    assert done.returncode == 0, done.stderr[-3000:]
    model_id = re.search(r"Model ticker \((\w+)\) version \w+: (starting|running)", done.stdout).group(1)
    assert f"Watch: blankly-magics logs --model {model_id} --follow" in done.stdout

    wait_for(lambda: "tick 5" in blankly("logs", "--model", "ticker").stdout, "the live model's log", timeout=120)
    status = blankly("status", "--model", "ticker")
    assert f"Model ticker ({model_id}) version" in status.stdout and ": running" in status.stdout
    assert "ticker" in blankly("status").stdout
    stopped = blankly("stop", "--model", "ticker")
    assert stopped.stdout == f"Model {model_id}: stopped\n"

    last = blankly("logs", "--model", "ticker", "--tail", "3").stdout.splitlines()
    assert last[0].startswith("(last 3 of ") and last[0].endswith(" lines; --tail 0 shows all)")
    assert len(last) == 4 and last[1].startswith("tick ")
    followed = blankly("logs", "--model", "ticker", "--follow", "--tail", "3").stdout.splitlines()
    assert followed == last + [f"(model {model_id} is not running any more)"]  # --tail holds with --follow


def test_bad_input_exits_2_with_one_line(home, tmp_path, rsi_notebook):
    assert one_line_error(blankly("backtest", str(tmp_path / "none.ipynb"))).startswith("no such notebook: ")
    assert not home.exists()  # refused before any server was started
    assert one_line_error(blankly("backtest", str(rsi_notebook), "--start", "2010-06-01")) == (
        "backtest period: give both a start and an end date (like 2021-01-01), or 'to' (a span like 1y)")
    assert one_line_error(blankly("backtest", str(rsi_notebook), "--python", "three")) == (
        "--python takes a version like 3.11, not 'three'")
    assert one_line_error(blankly("stauts")).endswith("; did you mean 'status'? (see `blankly-magics --help`)")
    assert one_line_error(blankly("status", "--bogus")) == (
        "blankly-magics: unrecognized arguments: --bogus (see `blankly-magics --help`)")
    assert one_line_error(blankly("versions")) == ("blankly-magics versions: the following arguments are "
                                                   "required: --model (see `blankly-magics versions --help`)")
    assert one_line_error(blankly("deploy", str(rsi_notebook), "--to", "1y")).startswith(
        "blankly-magics: unrecognized arguments: --to 1y")  # a live deploy has no backtest period
    assert one_line_error(blankly("logs")) == (
        "blankly-magics logs: give --model ID_OR_NAME or --backtest BACKTEST_ID")
    assert one_line_error(blankly("versions", "--model", "nosuch")).startswith("no model 'nosuch' in your projects")
    assert not (rsi_notebook.parent / ".blankly_magics.json").exists()  # nothing was run


def test_login_and_logout_against_a_server_with_a_token(home, local_server: ServerHandle, monkeypatch):
    token = local_server.refresh_token("alice")
    monkeypatch.setenv("BLANKLY_DEPLOY_URL", local_server.url)
    assert one_line_error(blankly("projects")).startswith("no refresh token: set BLANKLY_REFRESH_TOKEN")
    monkeypatch.setenv("MY_TOKEN", token)
    signed = blankly("login", "--token-env", "MY_TOKEN")
    assert signed.stdout == f"Signed in to {local_server.url} as alice\n", signed.stderr
    monkeypatch.delenv("MY_TOKEN")
    listed = blankly("projects")  # the token kept by the login (the Blankly CLI's file)
    assert "Projects (1)" in listed.stdout and token not in listed.stdout + listed.stderr
    assert blankly("logout").stdout == f"Signed out of {local_server.url}\n"
    assert one_line_error(blankly("projects")).startswith("no refresh token")
    assert blankly("logout").stdout == "Not signed in.\n"
