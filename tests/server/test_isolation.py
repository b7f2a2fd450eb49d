"""A machine where bubblewrap cannot run (here: a PATH without ``bwrap``): the server says so and
serves one local user only; ``--isolation none`` is the explicit way to accept the risk."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.fixtures_server import ServerHandle, wait_for, write_model_zip
from tests.server.runs import TICKER

REFUSAL_HINT = "--isolation none"


def no_bwrap_env(tmp: Path) -> dict[str, str]:
    """This environment with a PATH that has no bubblewrap (but the usual tools)."""
    bin_dir = tmp / "bin-without-bwrap"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sh", "true", "sleep", "env"):
        target = Path("/usr/bin") / tool
        if target.exists() and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(target)
    return {**os.environ, "PATH": str(bin_dir)}


def server_command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "blankly_magics.server", "--port", "0", "--data-dir", str(data_dir), *args]


@pytest.fixture(scope="module")
def unconfined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("unconfined")
    handle = ServerHandle(root / "data", root / "server.log", ["--log-level", "info"], no_bwrap_env(root))
    handle.start()
    try:
        yield handle
    finally:
        handle.close()


def test_the_server_says_runs_are_not_confined_at_start_and_in_health(unconfined: ServerHandle) -> None:
    assert unconfined.health()["isolation"] == "none"
    start = unconfined.log(0)
    assert "warning: runs are NOT confined (bubblewrap (bwrap) is not on PATH" in start
    assert "serving one local user only (--isolation none accepts the risk)" in start


def test_the_one_local_user_still_runs_models(unconfined: ServerHandle, tmp_path: Path) -> None:
    assert unconfined.token_command("local").returncode == 0
    with open(write_model_zip(tmp_path / "tick.zip", files={"bot.py": TICKER}), "rb") as fh:
        answer = unconfined.request("POST", "/model/deploy", user="local", files={"model": ("m.zip", fh)},
                                    data={"plan": "nano", "name": "ticker", "createNew": "true"})
    assert answer.status_code == 200, answer.text
    model_id = answer.json()["modelId"]
    wait_for(lambda: "tick 2" in unconfined.request("GET", "/model/logs", user="local",
                                                    params={"modelId": model_id}).json()["text"], "ticks")
    assert unconfined.request("POST", "/model/kill", user="local", data={"modelId": model_id}).ok


def test_a_token_for_a_second_user_is_refused_unless_the_risk_is_accepted(unconfined: ServerHandle) -> None:
    assert unconfined.token_command("local").returncode == 0  # the one user: again, fine
    refused = unconfined.token_command("mallory")
    assert refused.returncode == 2 and refused.stdout == ""
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: refusing a token for a second user ('mallory'")
    assert "runs cannot be confined here" in line and line.endswith(REFUSAL_HINT)
    accepted = unconfined.token_command("mallory", "--isolation", "none")
    assert accepted.returncode == 0 and len(accepted.stdout.strip()) > 20


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10"])
def test_a_public_host_is_refused_unless_the_risk_is_accepted(tmp_path: Path, host: str) -> None:
    env = no_bwrap_env(tmp_path)
    done = subprocess.run(server_command(tmp_path / "d", "--host", host, "--insecure-http"), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: --host {host} would serve other people, but runs cannot be confined here")
    assert line.endswith(f"accept the risk with {REFUSAL_HINT}")
    assert not (tmp_path / "d" / "server.json").exists()


def test_without_a_sandbox_the_other_refusals(tmp_path: Path) -> None:
    env = no_bwrap_env(tmp_path)
    strict = subprocess.run(server_command(tmp_path / "a", "--isolation", "bubblewrap"), env=env,
                            capture_output=True, text=True, timeout=120)
    assert strict.returncode == 2
    assert "--isolation bubblewrap: runs cannot be confined on this machine: bubblewrap (bwrap) is not on PATH" \
        in strict.stderr
    offline = subprocess.run(server_command(tmp_path / "b", "--run-network", "off"), env=env,
                             capture_output=True, text=True, timeout=120)
    assert offline.returncode == 2 and "--run-network off needs confined runs" in offline.stderr


def test_a_data_dir_with_two_users_does_not_start_unconfined(server_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for user in ("alice", "bob"):  # made while runs could be confined (bubblewrap on PATH here)
        first = ServerHandle(data, tmp_path / "unused.log")
        assert first.token_command(user).returncode == 0
    done = subprocess.run(server_command(data), env=no_bwrap_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "refusing a data dir with several users ('alice', 'bob')" in done.stderr
    server = server_factory(data, args=["--isolation", "none"], env=no_bwrap_env(tmp_path))
    assert server.health()["isolation"] == "none"
    assert "warning: runs are NOT confined (--isolation none)" in server.log(0)
