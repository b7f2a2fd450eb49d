"""A run cannot starve the machine: disk and process exhaustion are stopped at the plan's limits with
the reason, the run's files removed, while another user's backtest completes; and a server whose runs
have no network (``--run-network off``) still backtests on local prices, while a run that needs the
network fails saying why."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.fixtures_notebooks import RSI_BACKTEST_ARGS
from tests.fixtures_server import ServerHandle, wait_for, write_model_zip
from tests.server.runs import gone, model_zip, rsi_script, run_directly, run_processes

pytestmark = pytest.mark.slow  # real Blankly backtests beside the exhaustion

PLANS = {
    "backtesting": {
        "small": {"cpu": 1000, "ram": 2048, "timeout": 300},
        "tiny": {"cpu": 500, "ram": 1024, "timeout": 120, "disk": 40, "processes": 20},
    },
    "live": {"nano": {"cpu": 250, "ram": 512}},
}
ONE_ENDLESS_FILE = "f = open('big.bin', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))\n    f.flush()\n"
MANY_FILES = ("import os\ni = 0\nwhile True:\n"
              "    open('/tmp/part-%05d' % i, 'wb').write(os.urandom(1 << 19))\n    i += 1\n")
PROCESSES = ("import subprocess, time\nkids = [subprocess.Popen(['sleep', '600']) for _ in range(300)]\n"
             "print('started', len(kids), flush=True)\ntime.sleep(600)\n")
NEEDS_NETWORK = ("import urllib.request\n"
                 "urllib.request.urlopen('https://pypi.org/simple/', timeout=20).read(100)\n")


def start(root: Path, *args: str) -> ServerHandle:
    plans = root / "plans.json"
    plans.write_text(json.dumps(PLANS))
    handle = ServerHandle(root / "data", root / "server.log", ["--plans", str(plans), "--max-workers", "4", *args])
    return handle.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start(tmp_path_factory.mktemp("limits"))
    try:
        for user in ("alice", "mallory"):
            assert handle.token_command(user).returncode == 0
        yield handle
    finally:
        handle.close()


def backtest(server: ServerHandle, user: str, zip_path: Path, plan: str, args: dict) -> str:
    with open(zip_path, "rb") as fh:
        answer = server.request("POST", "/model/backtest", user=user, files={"model": ("m.zip", fh)},
                                data={"plan": plan, "name": zip_path.stem, "createNew": "true",
                                      "backtestArgs": json.dumps(args)})
    assert answer.status_code == 200, answer.text
    return answer.json()["backtestId"]


def finished(server: ServerHandle, user: str, backtest_id: str) -> dict:
    return wait_for(lambda: (s := server.request("GET", "/backtest/status", user=user,
                                                 params={"backtestId": backtest_id}).json())["status"]
                    in ("completed", "failed", "cancelled") and s, f"backtest {backtest_id}", 300)


def test_exhaustion_is_stopped_at_the_plans_limits_while_another_users_backtest_completes(
    server: ServerHandle, tmp_path: Path
) -> None:
    rsi = backtest(server, "alice", model_zip(tmp_path / "rsi.zip", rsi_script()), "small", RSI_BACKTEST_ARGS)
    hogs = {
        name: backtest(server, "mallory", write_model_zip(tmp_path / f"{name}.zip", files={"bot.py": script}),
                       "tiny", {})
        for name, script in (("one-file", ONE_ENDLESS_FILE), ("many-files", MANY_FILES),
                             ("processes", PROCESSES))
    }
    results = {name: finished(server, "mallory", ident) for name, ident in hogs.items()}
    disk = "stopped: exceeded the plan's disk allowance of 40 MB"
    assert results["one-file"]["status"] == "failed" and results["one-file"]["error"] == disk
    assert results["many-files"]["status"] == "failed" and results["many-files"]["error"] == disk
    assert results["processes"]["status"] == "failed"
    assert results["processes"]["error"] == "stopped: exceeded the plan's process limit of 20"
    for name, ident in hogs.items():  # what the runs wrote is gone (all of it past the disk); the log says why
        folder = server.data_dir / "runs" / "backtests" / ident
        left = sorted(p.name for p in folder.iterdir())
        assert left == (["output.log", "report"] if name == "processes" else ["output.log"])
        assert "stopped: exceeded the plan's" in (folder / "output.log").read_text()

    done = finished(server, "alice", rsi)
    assert done["status"] == "completed", done
    assert run_processes(server.data_dir) == []  # 300 sleepers included
    result = server.request("GET", "/backtest/result", user="alice", params={"backtestId": rsi}).json()["result"]
    assert result["metrics"] == run_directly(tmp_path / "direct", RSI_BACKTEST_ARGS)["metrics"]


def test_without_network_local_prices_backtest_and_a_download_fails_saying_why(tmp_path: Path) -> None:
    server = start(tmp_path, "--run-network", "off")
    try:
        offline = backtest(server, "alice", model_zip(tmp_path / "rsi.zip", rsi_script()), "small", RSI_BACKTEST_ARGS)
        online = backtest(server, "alice", write_model_zip(tmp_path / "fetch.zip", files={"bot.py": NEEDS_NETWORK}),
                          "small", {})
        assert finished(server, "alice", offline)["status"] == "completed"
        failed = finished(server, "alice", online)
        assert failed["status"] == "failed"
        assert failed["error"].startswith("urllib.error.URLError")
        assert failed["error"].endswith("(runs have no network on this server: it was started with "
                                        "--run-network off)")
    finally:
        server.close()
    assert all(gone(pid) for pid in run_processes(tmp_path))
