"""The embedded server: started once per data dir, attached to after, stopped with nothing left."""
from __future__ import annotations

import json
import stat
import subprocess
import sys

import psutil
import pytest
import requests

from blankly_magics import embedded
from blankly_magics.client import DeploymentClient
from blankly_magics.embedded import EmbeddedServerError, ensure_local_server, local_refresh_token, stop_local_server

pytestmark = pytest.mark.usefixtures("private_home")  # tests/fixtures_home.py




@pytest.fixture
def data_dir(private_home, tmp_path):
    """The data home (BLANKLY_MAGICS_HOME); whatever server the test leaves is stopped."""
    directory = tmp_path / "bm"
    yield directory
    stop_local_server(directory)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_data_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BLANKLY_MAGICS_HOME", str(tmp_path / "mine"))
    assert embedded.data_home() == tmp_path / "mine"
    monkeypatch.delenv("BLANKLY_MAGICS_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert embedded.data_home() == tmp_path / "xdg" / "blankly_magics"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert embedded.data_home() == tmp_path / ".local" / "share" / "blankly_magics"


def test_started_once_attached_after_and_stopped_with_nothing_left(data_dir):
    first = ensure_local_server()  # no argument: the data home from BLANKLY_MAGICS_HOME
    assert first.started and first.data_dir == data_dir.resolve()
    assert first.url.startswith("http://127.0.0.1:")
    health = requests.get(first.url + "/health", timeout=10).json()
    assert health["service"] == "blankly-magics-deployment-server"
    assert json.loads((data_dir / "server.json").read_text())["pid"] == first.pid
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700

    second = ensure_local_server(data_dir)
    assert (second.pid, second.url, second.started) == (first.pid, first.url, False)

    assert stop_local_server(data_dir) is True
    assert gone(first.pid)
    assert not (data_dir / "server.json").exists()
    assert stop_local_server(data_dir) is False


def test_two_kernels_starting_at_once_share_one_server(data_dir):
    code = (
        "import sys; from blankly_magics.embedded import ensure_local_server as e; "
        "print(e(sys.argv[1], timeout=60).pid)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    # Wait for both before reading either, so a failure cannot leave a server starting unseen.
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    pids = {int(out) for out in outs}
    assert len(pids) == 1
    assert ensure_local_server(data_dir).pid in pids


def test_a_stale_server_json_is_replaced_by_a_new_server(data_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data_dir.mkdir(mode=0o700)
    (data_dir / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": dead.pid}))
    server = ensure_local_server(data_dir)
    assert server.started and server.pid != dead.pid
    assert json.loads((data_dir / "server.json").read_text())["pid"] == server.pid


def test_a_server_that_cannot_start_is_reported_with_its_log(data_dir):
    data_dir.mkdir(mode=0o700)
    (data_dir / "blankly.db").write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(EmbeddedServerError) as caught:
        ensure_local_server(data_dir)
    message = str(caught.value)
    assert "exited with code" in message and str(data_dir / "server.log") in message
    assert "not a database" in message  # the tail of server.log says why
    assert not (data_dir / "server.json").exists()


def test_the_local_token_is_cached_owner_only_and_renewable(data_dir):
    server = ensure_local_server(data_dir)
    token = local_refresh_token(data_dir)
    path = data_dir / "local-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_refresh_token(data_dir) == token
    client = DeploymentClient(server.url, token)
    user = client.login()
    renewed = local_refresh_token(data_dir, renew=True)
    assert renewed != token and path.read_text() == renewed
    assert DeploymentClient(server.url, renewed).login() == user  # the same local user


def test_a_new_server_takes_the_port_the_last_one_had(data_dir):
    first = ensure_local_server(data_dir)
    assert stop_local_server(data_dir) is True
    again = ensure_local_server(data_dir)
    assert again.started and again.pid != first.pid
    assert again.url == first.url  # the notebook's URL still works


def test_a_server_whose_old_port_is_taken_starts_on_another(data_dir):
    import socket
    from urllib.parse import urlsplit

    first = ensure_local_server(data_dir)
    port = urlsplit(first.url).port
    assert stop_local_server(data_dir) is True
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the old server's TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        again = ensure_local_server(data_dir)
    assert again.started and urlsplit(again.url).port != port
    assert requests.get(again.url + "/health", timeout=10).json()["service"] == "blankly-magics-deployment-server"


KERNEL = """
import sys
from blankly_magics.embedded import ensure_local_server
print(ensure_local_server(sys.argv[1], timeout=60).pid, flush=True)
sys.stdin.readline()  # lives on, as a kernel does, until told to end
"""


def test_a_stop_from_another_process_returns_once_the_server_is_gone_and_its_starter_reaps_it(data_dir):
    import time

    kernel = subprocess.Popen([sys.executable, "-c", KERNEL, str(data_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        pid = int(kernel.stdout.readline())
        started = time.monotonic()
        assert stop_local_server(data_dir, timeout=10) is True  # no psutil.TimeoutExpired
        assert time.monotonic() - started < 10  # gone before its SIGTERM's grace ran out
        assert gone(pid)

        def reaped() -> bool:
            try:
                return not any(c.status() == psutil.STATUS_ZOMBIE for c in psutil.Process(kernel.pid).children())
            except psutil.NoSuchProcess:
                return False

        from tests.fixtures_server import wait_for

        wait_for(reaped, "the kernel to reap the server it started", timeout=10, poll=0.05)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).ppid() != kernel.pid
    finally:
        kernel.stdin.close()
        kernel.wait(30)


def test_a_stop_in_the_process_that_started_it_leaves_no_defunct_child(data_dir):
    server = ensure_local_server(data_dir)
    assert stop_local_server(data_dir) is True
    assert not psutil.pid_exists(server.pid)  # reaped: not even a zombie is left
    assert server.pid not in [c.pid for c in psutil.Process().children()]
