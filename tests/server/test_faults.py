"""Faults on the whole path: nothing lost, nothing half-stored, and the user told what happened.

Each test breaks something real — the server process (SIGKILL, then a stop during its
recovery), the connection (a TCP proxy that cuts, throttles, holds or answers like a broken
nginx), the kernel (a real SIGINT during %%blankly_deploy), the disk (a small tmpfs filled up,
read-only mounts) — and checks what the user sees and what the server holds afterwards.
Complements tests/test_server_api.py and tests/test_runs_http.py (one SIGKILL with running
models; a raw-socket upload cut by SIGKILL) and tests/test_client.py (scripted servers).
"""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import urlsplit

import pytest
import requests

from blankly_magics.client import DeploymentClient, DeploymentError
from tests.fixtures_notebooks import write_notebook
from tests.fixtures_server import ServerHandle, wait_for, write_model_zip
from tests.reliability import record
from tests.magics_shell import Cells
from tests.server.runs import gone, run_processes

TICKER = "import itertools, time\nfor i in itertools.count():\n    print(f'tick {i}', flush=True)\n    time.sleep(0.5)\n"
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
NGINX_502 = ("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
             "</center><hr><center>nginx</center></body></html>")
NGINX_503 = NGINX_502.replace("502 Bad Gateway", "503 Service Temporarily Unavailable")


# ---------------------------------------------------------------- a proxy that misbehaves on demand


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server.

    Each new connection takes the next mode from ``script``, else ``mode``:
    ``pass``; ``cut`` (forward ``cut_after`` request bytes, then, once ``cut_when()`` holds when it is
    set, reset both sides; ``held_at_cut`` says whether it held);
    ``slow`` (forward the request at ``rate`` bytes/s); ``hold`` (forward requests, but keep
    the answer to an upload until ``release`` is set); ``html502``/``html503`` (read the request, answer
    like a broken nginx, with Retry-After on the 503); ``silent`` (read it, close, no answer).
    """

    def __init__(self, upstream_url: str) -> None:
        self.point_to(upstream_url)
        self.mode = "pass"
        self.script: list[str] = []
        self.cut_after = 1 << 20
        self.cut_when: Optional[Callable[[], bool]] = None
        self.held_at_cut: Optional[bool] = None
        self.rate = 256 * 1024
        self.release = threading.Event()
        self.seen: list[str] = []
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def point_to(self, url: str) -> None:
        parts = urlsplit(url)
        self.upstream = (parts.hostname, parts.port)

    def set_mode(self, mode: str) -> None:
        """Switch modes and drop open connections, so the client's next request opens a new one."""
        self.mode = mode
        self.release.clear()
        self._drop_all()

    def close(self) -> None:
        self._closed = True
        self.release.set()
        self._listener.close()
        self._drop_all()

    # -- plumbing -------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._open.append(sock)
        return sock

    def _drop_all(self) -> None:
        with self._lock:
            socks, self._open = self._open, []
        for sock in socks:
            _close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.script.pop(0) if self.script else self.mode
                self.seen.append(mode)
            threading.Thread(target=self._serve, args=(self._track(client), mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        if mode in ("html502", "html503", "silent"):
            self._answer_alone(client, mode)
            return
        try:
            upstream = self._track(socket.create_connection(self.upstream, timeout=30))
        except OSError:
            _close(client)
            return
        upload_sent = threading.Event()
        threading.Thread(target=self._pump_up, args=(client, upstream, mode, upload_sent), daemon=True).start()
        self._pump_down(upstream, client, mode, upload_sent)

    def _pump_up(self, src: socket.socket, dst: socket.socket, mode: str, upload_sent: threading.Event) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(16384 if mode == "slow" else 65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if any(f"POST /model/{r} ".encode() in data for r in ("deploy", "backtest", "upload")):
                    upload_sent.set()
                if mode == "cut" and sent + len(data) >= self.cut_after:
                    dst.sendall(data[: max(0, self.cut_after - sent)])
                    self._wait_to_cut()
                    _reset(src)
                    _reset(dst)
                    return
                dst.sendall(data)
                sent += len(data)
                if mode == "slow":
                    time.sleep(len(data) / self.rate)
        except OSError:
            _close(src)
            _close(dst)

    def _wait_to_cut(self, timeout: float = 60.0) -> None:
        """Wait (bounded) for ``cut_when``: what the other end must have seen before the cut."""
        if self.cut_when is None:
            return
        deadline = time.monotonic() + timeout
        while not (held := self.cut_when()) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.held_at_cut = held

    def _pump_down(self, src: socket.socket, dst: socket.socket, mode: str, upload_sent: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if mode == "hold" and upload_sent.is_set():
                    self.release.wait(120)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            _close(src)
            _close(dst)

    def _answer_alone(self, client: socket.socket, mode: str) -> None:
        """Read one whole request (so the client is not cut off mid-send), then answer or not."""
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            header, _, body = head.partition(b"\r\n\r\n")
            length = 0
            for line in header.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(body) < length:
                chunk = client.recv(65536)
                if not chunk:
                    return
                body += chunk
            if mode != "silent":
                status, page, extra = (("502 Bad Gateway", NGINX_502, "") if mode == "html502"
                                       else ("503 Service Temporarily Unavailable", NGINX_503, "Retry-After: 7\r\n"))
                client.sendall(
                    f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {len(page)}\r\n"
                    f"{extra}Connection: close\r\n\r\n{page}".encode()
                )
        except OSError:
            pass
        finally:
            _close(client)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST, as a dropped network or a killed peer does, at once: the other pump's
    blocked recv() on it is woken first (SHUT_RD sends nothing), else the kernel would keep the
    socket, and send the RST, only once that recv returned (its 30 s timeout)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[ServerHandle], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(server: ServerHandle) -> FaultProxy:
        proxies.append(FaultProxy(server.url))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


# ---------------------------------------------------------------- helpers


def upload(server: ServerHandle, route: str, zip_path: Path, user: str = "alice", **fields: str) -> dict:
    with open(zip_path, "rb") as fh:
        answer = server.request("POST", route, user=user, data=fields,
                                files={"model": ("m.zip", fh, "application/zip")})
    assert answer.status_code == 200, answer.text
    return answer.json()


def tmp_files(server: ServerHandle) -> list[tuple[str, int]]:
    """The server's temp uploads with their sizes (files may vanish while we look)."""
    out = []
    for path in (server.data_dir / "tmp").iterdir():
        try:
            out.append((path.name, path.stat().st_size))
        except FileNotFoundError:
            continue
    return out


def receiving(server: ServerHandle, at_least: int = 1) -> bool:
    return any(size >= at_least for _, size in tmp_files(server))


def assert_nothing_half_stored(server: ServerHandle, before: Any) -> None:
    wait_for(lambda: not tmp_files(server), "the server to drop the partial upload", timeout=60)
    assert before.diff(server.snapshot()) == {}


def integrity(data_dir: Path) -> str:
    conn = sqlite3.connect(f"file:{data_dir / 'blankly.db'}?mode=ro", uri=True, timeout=15)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def big_zip(path: Path, megabytes: int) -> Path:
    return write_model_zip(path, files={"blob.bin": os.urandom(megabytes << 20)})


def _state(server: ServerHandle, model_id: str) -> dict:
    return server.request("GET", "/model/deployment", params={"modelId": model_id}).json()


def _status(server: ServerHandle, backtest_id: str) -> dict:
    return server.request("GET", "/backtest/status", params={"backtestId": backtest_id}).json()


# ---------------------------------------------------------------- the server dies


def test_server_killed_mid_upload_the_client_says_so_and_a_retry_after_restart_succeeds(server_factory, tmp_path):
    server = server_factory()
    token = server.refresh_token("alice")
    client = DeploymentClient(server.url, token, retries=0)
    client.login()
    before = server.snapshot()
    zip_path = big_zip(tmp_path / "big.zip", 6)
    old_url = server.url

    def progress(sent: int, total: int) -> None:
        if sent >= total * 0.4 and server.running:
            wait_for(lambda: receiving(server), "the upload to reach the server's disk", timeout=60)
            server.kill()  # SIGKILL while the body is still coming in

    with pytest.raises(DeploymentError) as caught:
        client.upload(zip_path, progress=progress)
    message = str(caught.value)
    assert message.startswith(f"the upload to {old_url} failed: the connection broke"), message
    assert "safe to try again" in message and token not in message
    assert tmp_files(server), "the killed server left a partial upload behind"

    server.start()
    assert not tmp_files(server) and before.diff(server.snapshot()) == {}
    retry = DeploymentClient(server.url, token).upload(zip_path)
    assert (server.data_dir / "versions" / f"{retry['versionId']}.zip").read_bytes() == zip_path.read_bytes()
    record("faults", "server SIGKILLed mid-upload (6 MB, killed at 40 %)",
           what="client: one clear 'connection broke ... safe to try again' line; after restart no partial "
                "version or temp file; the retry stores the zip byte for byte", survived=1)


def test_every_upload_answered_before_a_sigkill_is_there_after_the_restart(server_factory, tmp_path):
    """The database commits without waiting for the disk (WAL, synchronous=NORMAL): that
    is safe from a killed process, which this checks, not from a power cut."""
    server = server_factory()
    zips = [write_model_zip(tmp_path / f"m{i}.zip", files={"bot.py": f"print({i})\n"}) for i in range(4)]
    zips.append(big_zip(tmp_path / "big.zip", 1))  # received on disk, not in memory
    answered: list[tuple[dict, Path]] = []

    def send(zip_path: Path) -> None:
        for _ in range(5):
            answered.append((upload(server, "/model/upload", zip_path), zip_path))

    threads = [threading.Thread(target=send, args=(z,)) for z in zips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    server.kill()  # at once, after the last answer
    server.start()
    assert integrity(server.data_dir) == "ok"
    assert len(answered) == 25 and not tmp_files(server)
    for answer, zip_path in answered:
        versions = server.request("GET", "/model/versions", params={"modelId": answer["modelId"]}).json()
        assert answer["versionId"] in {v["versionId"] for v in versions}
        stored = server.data_dir / "versions" / f"{answer['versionId']}.zip"
        assert stored.read_bytes() == zip_path.read_bytes()
    assert len(list((server.data_dir / "versions").iterdir())) == 25
    record("faults", "server SIGKILLed right after 25 answered uploads from 5 threads",
           what="after the restart every answered version is listed and its zip is byte for byte the "
                "upload; integrity_check ok; no stray file", survived=1)


def test_a_crash_then_a_stop_during_recovery_leaves_one_live_process_and_no_orphans(server_factory, tmp_path):
    server = server_factory()
    live = upload(server, "/model/deploy", write_model_zip(tmp_path / "t.zip", files={"bot.py": TICKER}), plan="nano")
    bt = upload(server, "/model/backtest", write_model_zip(tmp_path / "s.zip", files={"bot.py": SLEEPER}))
    wait_for(lambda: _state(server, live["modelId"])["state"] == "running"
             and _status(server, bt["backtestId"])["status"] == "running", "the model and the backtest to run")
    first = run_processes(server.data_dir)
    assert len(first) == 2

    server.kill()  # a crash: each run's sandbox dies with it
    wait_for(lambda: all(gone(pid) for pid in first), "the runs to end with their server", 30)
    server.start()  # recovery: kills the leftovers, fails the backtest, starts the live model again
    server.stop()  # ... and is stopped at once, maybe in the middle of that
    assert all(gone(pid) for pid in first)
    assert run_processes(server.data_dir) == [], "a clean stop must leave no child running"

    server.start()
    status = _status(server, bt["backtestId"])
    assert status["status"] == "failed" and "server" in status["error"], status
    dep = wait_for(lambda: (d := _state(server, live["modelId"]))["state"] == "running" and d["pid"] and d,
                   "the live model to run again")
    assert run_processes(server.data_dir) == [dep["pid"]]
    assert integrity(server.data_dir) == "ok"
    record("faults", "SIGKILL with a live model and a backtest running, then SIGTERM during recovery",
           what="backtest failed with the reason; live model running again as exactly one process; "
                "no orphan after either stop", survived=2)


# ---------------------------------------------------------------- the network fails


def test_a_connection_dropped_mid_upload_is_a_clear_error_and_leaves_nothing(local_server, fault_proxy, tmp_path):
    proxy = fault_proxy(local_server)
    token = local_server.refresh_token("alice")
    client = DeploymentClient(proxy.url, token, retries=0)
    client.login()
    zip_path = big_zip(tmp_path / "big.zip", 3)
    before = local_server.snapshot()

    proxy.set_mode("cut")
    # The cut comes once the server holds part of the upload, so "tmp/ is empty" below means the server
    # dropped it (the client's error may come before the server has even read the body).
    proxy.cut_when = lambda: receiving(local_server, proxy.cut_after // 2)
    with pytest.raises(DeploymentError) as caught:
        client.backtest(zip_path, plan="small", backtest_args={"to": "1y"})
    message = str(caught.value)
    assert message.startswith(f"the upload to {proxy.url} failed: the connection broke"), message
    assert proxy.held_at_cut, "the server never held part of the upload before the cut"
    assert_nothing_half_stored(local_server, before)
    assert requests.get(f"{local_server.url}/health", timeout=30).ok

    proxy.set_mode("pass")
    answer = client.upload(zip_path)
    assert (local_server.data_dir / "versions" / f"{answer['versionId']}.zip").read_bytes() == zip_path.read_bytes()
    record("faults", "client connection reset after 1 MB of a 3 MB upload",
           what="clear one-line error; the server drops the partial upload (no row, no file); a retry works",
           survived=1)


def test_a_proxy_answering_502_and_503_pages(local_server, fault_proxy, tmp_path):
    proxy = fault_proxy(local_server)
    client = DeploymentClient(proxy.url, local_server.refresh_token("alice"), retries=3, backoff=0.05)
    client.login()
    before = local_server.snapshot()

    proxy.script = ["html502", "html502"]
    proxy.set_mode("pass")
    assert [p["name"] for p in client.projects()] == ["Personal"]  # read again, with backoff, until it worked
    assert proxy.seen[-3:] == ["html502", "html502", "pass"]

    proxy.set_mode("html503")
    with pytest.raises(DeploymentError) as caught:
        client.backtest(write_model_zip(tmp_path / "m.zip"), plan="small", backtest_args={})
    error = caught.value
    assert error.status == 503 and error.retry_after == 7
    assert "not JSON (text/html): 503 Service Temporarily Unavailable" in str(error)
    assert proxy.seen.count("html503") == 1, "an upload must never be retried"
    assert before.diff(local_server.snapshot()) == {}

    proxy.set_mode("silent")
    with pytest.raises(DeploymentError) as caught:
        client.cancel_backtest("0" * 32)
    assert str(caught.value).startswith(f"lost the connection to the deployment server at {proxy.url}")
    record("faults", "a proxy answering 502/503 HTML pages or nothing",
           what="reads retried with backoff and recover; uploads not retried, 503 keeps its Retry-After; "
                "nothing stored", survived=3)


# ---------------------------------------------------------------- the kernel is interrupted


def _interrupt_main_when(check: Callable[[], Any], timeout: float = 120) -> threading.Thread:
    """A real SIGINT to the main thread once ``check()`` holds: what Jupyter's interrupt sends."""
    main = threading.main_thread().ident

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready = check()
            except (OSError, requests.RequestException):  # the test ended (and its server) meanwhile
                return
            if ready:
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def sign_in_through_a_proxy(cells: Cells, server: ServerHandle, fault_proxy, monkeypatch) -> tuple[FaultProxy, str]:  # noqa: F811
    """alice signed in to ``server`` through a new FaultProxy: (the proxy, her refresh token)."""
    proxy = fault_proxy(server)
    token = server.refresh_token("alice")
    cells.secrets.add(token)
    monkeypatch.setenv("ALICE_TOKEN", token)
    assert cells.run(f"%blankly_login --url {proxy.url} --token-env ALICE_TOKEN") == f"Signed in to {proxy.url} as alice\n"
    return proxy, token


def test_interrupting_deploy_mid_upload_and_after_it_says_what_the_server_holds(
    cells: Cells, local_server: ServerHandle, fault_proxy, tmp_path, monkeypatch  # noqa: F811
):
    kernel_tmp = tmp_path / "kernel-tmp"
    kernel_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(kernel_tmp))  # where runs puts the zip it uploads
    proxy, _ = sign_in_through_a_proxy(cells, local_server, fault_proxy, monkeypatch)
    nb = write_notebook(tmp_path / "big.ipynb", ["import time\n"])
    # 8 MB: well past what loopback socket buffers take at once (2.6 MB seen), so step 1 is mid-upload
    (tmp_path / "blob.bin").write_bytes(os.urandom(8 << 20))
    cell = f"%%blankly_deploy --notebook {nb} --include {tmp_path / 'blob.bin'} --name big -m v1\nprint('done')"
    before = local_server.snapshot()

    # 1. mid-upload: the throttled body is still arriving at the server
    proxy.set_mode("slow")
    watcher = _interrupt_main_when(lambda: receiving(local_server, 256 * 1024))
    out = cells.run(cell)
    watcher.join(5)
    assert "Upload interrupted: nothing was stored on the server." in out, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert_nothing_half_stored(local_server, before)
    assert not list(kernel_tmp.iterdir()), "the zip written for the upload was left behind"

    # 2. after the upload: the server stored it, its answer is held back by the proxy
    proxy.set_mode("hold")
    watcher = _interrupt_main_when(lambda: stored_models(local_server, "big"))
    out = cells.run(cell)
    watcher.join(5)
    (model_id,) = stored_models(local_server, "big")
    version_id = local_server.request("GET", "/model/versions", params={"modelId": model_id}).json()[0]["versionId"]
    assert (f"Interrupted after the upload was sent: the server stored it as model big ({model_id}), version "
            f"{version_id}; the next run of this notebook adds a version to that model. "
            f"Check it with %blankly status --model {model_id}") in out, out
    proxy.set_mode("pass")
    listing = cells.run(f"%blankly versions --model {model_id}")
    assert "v1" in listing  # what the message pointed to is really there
    assert not list(kernel_tmp.iterdir())

    # 3. and running the cell again adds a version to that model: no second model named big
    out = cells.run(cell)
    assert f"Uploading to model big ({model_id})" in out and "UsageError" not in out, out
    assert stored_models(local_server, "big") == [model_id]
    assert len(local_server.request("GET", "/model/versions", params={"modelId": model_id}).json()) == 2
    record("faults", "kernel interrupt (SIGINT) during %%blankly_deploy: mid-upload and while awaiting the answer",
           what="mid-upload: 'nothing was stored' and the server holds nothing; after the upload: the model it "
                "made is named with its id and remembered; running the cell again adds a version to it, "
                "no second model of that name",
           survived=2)


def stored_models(server: ServerHandle, name: str) -> list[str]:
    """Ids of alice's models named ``name`` that hold at least one stored version."""
    return [m["modelId"] for m in server.request("GET", "/model/status").json()
            if m["name"] == name
            and server.request("GET", "/model/versions", params={"modelId": m["modelId"]}).json()]


def test_interrupt_whose_lookup_fails_the_next_deploy_still_finds_the_model_by_its_upload(
    cells: Cells, local_server: ServerHandle, fault_proxy, tmp_path, monkeypatch  # noqa: F811
):
    proxy, token = sign_in_through_a_proxy(cells, local_server, fault_proxy, monkeypatch)
    # Another notebook's model of the same name: it must never be taken over.
    with DeploymentClient(local_server.url, token) as other_client:
        (other,) = [other_client.upload(write_model_zip(tmp_path / "other.zip"), name="big")["modelId"]]
    nb = write_notebook(tmp_path / "big.ipynb", ["import time\n"])
    cell = f"%%blankly_deploy --notebook {nb} --name big -m v1\nprint('done')"

    # The answer is held; once the server stored the upload, the next connection (the
    # lookup the interrupt makes) gets no answer either, as if the server went away.
    proxy.set_mode("hold")

    def stored_then_cut() -> bool:
        if len(stored_models(local_server, "big")) < 2:
            return False
        proxy.script.append("silent")
        return True

    watcher = _interrupt_main_when(stored_then_cut)
    out = cells.run(cell)
    watcher.join(5)
    assert ("Interrupted after the upload was sent: the server may have stored it; check with %blankly versions "
            "--model big. If it did, the next run of this notebook adds a version to that model "
            "(the one named 'big' holding this very upload) instead of making a second 'big'.") in out, out
    (made,) = [m for m in stored_models(local_server, "big") if m != other]

    proxy.set_mode("pass")
    out = cells.run(cell)
    assert "the upload sent at " in out and (f"that got no answer made model big ({made}) on the server: "
                                             "adding a version to it instead of making a second 'big'") in out, out
    assert f"Uploading to model big ({made})" in out, out
    assert sorted(stored_models(local_server, "big")) == sorted([other, made])  # still two: no third
    versions = {m: len(local_server.request("GET", "/model/versions", params={"modelId": m}).json())
                for m in (other, made)}
    assert versions == {other: 1, made: 2}
    out = cells.run(cell)  # remembered from now on, like any deployed model
    assert f"Uploading to model big ({made})" in out and "no answer" not in out, out

    # Two models named big: a lookup by that name lists both ids instead of picking one.
    message = cells.fails("%blankly versions --model big")
    assert message.startswith("several models are named 'big' in your projects: ") and message.endswith(
        "; pass --model with one of these ids"), message
    assert other in message and made in message
    assert cells.fails(f"%%blankly_deploy --notebook {nb} --model big\nprint('done')") == message
    assert f"Versions of model {made} (3)" in cells.run(f"%blankly versions --model {made}")


# ---------------------------------------------------------------- the disk fails


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (we run as root; chmod cannot stop root's writes, a full or read-only disk can)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root with CAP_SYS_ADMIN")
    try:
        yield mount
    finally:
        for sub in sorted(mount.rglob("*"), reverse=True):
            if sub.is_mount():
                subprocess.run(["umount", "-l", str(sub)], capture_output=True)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount: Path, leave: int = 0) -> Path:
    """Take the disk's free space, leaving about ``leave`` bytes."""
    filler = mount / f"filler-{len(list(mount.glob('filler-*')))}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        stats = os.statvfs(mount)
        room = max(0, stats.f_bavail * stats.f_frsize - leave)
        block = bytes(1 << 16)
        while room > 0:
            os.write(fd, block[: min(room, len(block))])
            room -= len(block)
        if not leave:
            while True:
                os.write(fd, block[:4096])
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_a_clear_503_and_the_database_stays_sound(tiny_fs, server_factory, tmp_path):
    server = server_factory(tiny_fs / "data")
    client = DeploymentClient(server.url, server.refresh_token("alice"), retries=0)
    kept = client.upload(write_model_zip(tmp_path / "small.zip"))
    zip_path = big_zip(tmp_path / "big.zip", 3)
    before = server.snapshot()

    fill(tiny_fs, leave=512 * 1024)  # room for the database, not for the zip
    with pytest.raises(DeploymentError) as caught:
        client.upload(zip_path)
    assert caught.value.status == 503 and "could not store the upload: No space left on device" in str(caught.value)
    assert_nothing_half_stored(server, before)

    fill(tiny_fs)  # not a byte left: the database cannot grow either
    with pytest.raises(DeploymentError) as caught:
        for n in range(50):  # SQLite may have free pages left: write until it needs the disk
            client.create_project(f"p{n}", description="d" * 9000)
    assert caught.value.status == 503 and "database or disk is full" in str(caught.value), caught.value
    assert "disk space" in str(caught.value)
    assert client.versions(kept["modelId"])[0]["versionId"] == kept["versionId"]  # reads still work
    assert integrity(server.data_dir) == "ok"

    for filler in tiny_fs.glob("filler-*"):
        filler.unlink()
    answer = client.upload(zip_path)
    server.restart()
    assert integrity(server.data_dir) == "ok"
    client = DeploymentClient(server.url, server.refresh_token("alice"))
    assert {v["versionId"] for m in client.models() for v in client.versions(m["modelId"])} >= {
        kept["versionId"], answer["versionId"]}
    record("faults", "disk full (16 MB tmpfs): upload, then every write",
           what="503 naming 'No space left on device' / 'database or disk is full'; reads keep working; "
                "integrity_check ok; uploads work once space is back; nothing lost across a restart", survived=2)


def test_an_unwritable_data_dir_is_a_clear_error_and_nothing_is_half_stored(tiny_fs, server_factory, tmp_path):
    data = tiny_fs / "data"
    server = server_factory(data)
    client = DeploymentClient(server.url, server.refresh_token("alice"), retries=0)
    zip_path = write_model_zip(tmp_path / "m.zip")
    before = server.snapshot()
    for sub in ("tmp", "versions"):  # a read-only filesystem where the server writes uploads
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(data / sub)], check=True)
        try:
            with pytest.raises(DeploymentError) as caught:
                client.upload(zip_path)
            assert caught.value.status == 503, caught.value
            assert str(caught.value).startswith("the server could not store the upload: "), caught.value
            assert str(data) not in str(caught.value)  # the OS's reason, not the server's paths
        finally:
            subprocess.run(["umount", str(data / sub)], check=True)
        assert before.diff(server.snapshot()) == {} and not tmp_files(server)
    assert client.upload(zip_path)["versionId"]

    server.stop()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    try:
        started = subprocess.run(
            [sys.executable, "-m", "blankly_magics.server", "--port", "0", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_fs)], check=True)
    assert started.returncode != 0
    assert started.stderr.strip().splitlines()[-1] == (
        f"error: cannot use the data dir {data}: [Errno 30] Read-only file system: '{data}'"
    ), started.stderr
    assert "Traceback" not in started.stderr
    server.start()
    assert integrity(data) == "ok"
    record("faults", "read-only filesystem under tmp/ and versions/, then under the whole data dir",
           what="uploads: 503 'could not store the upload: <reason>', nothing stored; startup: one line "
                "naming the data dir and the reason; the database sound afterwards", survived=3)
