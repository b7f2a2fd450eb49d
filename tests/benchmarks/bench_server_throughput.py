"""Small model uploads per second into our server vs a bare Starlette endpoint.

Eight threads, each on its own kept-alive connection, POST the same
tiny valid model zip (built with our bundle) to ``/model/upload``: on our server
each one is parsed, size-capped, hashed, checked as a zip, stored as a new
immutable version of that thread's model and answered; the bare endpoint
(``bare_server``, served the same way) only writes the body to a file. Rounds
alternate between the two; every answer must be a success. Loopback only,
bounded in count and in time.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from .harness import Row, Server, interleaved, local_server, median, server_process, spread

NAME = "server_throughput"
THREADS = 8
ROUND_TIMEOUT = 60.0  # seconds: a round stops here even if not all its uploads are done


def tiny_model(folder: Path) -> bytes:
    from blankly_magics.export import build_bundle

    folder.mkdir(parents=True, exist_ok=True)
    return build_bundle(["print('a tiny model')\n"], base_dir=folder).zip_bytes()


def prepared(url: str, zip_bytes: bytes, fields: dict[str, str], headers: dict[str, str]) -> tuple[bytes, dict]:
    """One multipart body, encoded once and sent again and again (the client's cost stays out)."""
    import requests

    req = requests.Request("POST", url + "/model/upload", data=fields, headers=headers,
                           files={"model": ("model.zip", zip_bytes, "application/zip")}).prepare()
    return req.body, dict(req.headers)


def bodies(server: Server, zip_bytes: bytes, ours: bool, threads: int = THREADS) -> list[tuple[bytes, dict]]:
    """Per thread: its own model on our server (so threads add versions side by side)."""
    fields = {"pythonVersion": "%d.%d" % sys.version_info[:2], "type": "strategy", "createNew": "False"}
    if not ours:
        return [prepared(server.url, zip_bytes, {**fields, "modelId": "bare"}, {})] * threads
    from blankly_magics.client import DeploymentClient

    client = DeploymentClient(server.url, server.refresh_token())
    client.login()
    header = {"token": client._id_token.reveal()}  # type: ignore[union-attr]  # lives an hour: enough
    out = []
    for i in range(threads):
        model = client.create_model(f"throughput {i}")
        out.append(prepared(server.url, zip_bytes, {**fields, "modelId": model["modelId"],
                                                    "projectId": model["projectId"]}, header))
    client.close()
    return out


def hammer(server: Server, payloads: list[tuple[bytes, dict]], count: int, cpu: list[float]) -> float:
    """``count`` uploads from one thread per payload; uploads per second. Any failed answer raises.

    The threads use ``http.client`` on a kept-alive connection, much lighter than
    ``requests``, so that on two cores the server, not the load generator, is what
    is measured. The server's CPU ms per upload go to ``cpu``."""
    import http.client
    import json
    from urllib.parse import urlsplit

    import psutil

    host = urlsplit(server.url)
    threads = len(payloads)
    per_thread = max(1, count // threads)
    done = [0] * threads
    errors: list[str] = []
    deadline = time.monotonic() + ROUND_TIMEOUT

    def worker(i: int) -> None:
        body, headers = payloads[i]
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        try:
            for _ in range(per_thread):
                if errors or time.monotonic() > deadline:
                    return
                conn.request("POST", "/model/upload", body=body, headers=headers)
                response = conn.getresponse()
                answer = json.loads(response.read() or b"null")
                if response.status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
                    errors.append(f"HTTP {response.status}: {answer}")
                    return
                done[i] += 1
        except Exception as exc:  # noqa: BLE001 - any failure ends the round with its message
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    proc = psutil.Process(server.proc.pid)
    cpu_before = sum(proc.cpu_times()[:2])
    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    started = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join(ROUND_TIMEOUT + 35)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"an upload to {server.url} failed: {errors[0]}")
    cpu.append((sum(proc.cpu_times()[:2]) - cpu_before) * 1000 / max(1, sum(done)))
    return sum(done) / elapsed


def rounds(targets: dict[str, tuple[Server, list[tuple[bytes, dict]]]], count: int,
           repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Uploads per second and server CPU ms per upload, per target: one warm-up round each
    (first imports, caches), then ``repeats`` rounds of ``count`` uploads, interleaved."""
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    for server, payloads in targets.values():
        hammer(server, payloads, len(payloads), [])
    rates = interleaved({name: (lambda server=server, payloads=payloads, name=name:
                                hammer(server, payloads, count, cpu[name]))
                         for name, (server, payloads) in targets.items()}, repeats)
    return rates, cpu


def run(quick: bool = False) -> list[Row]:
    count, repeats = (40, 1) if quick else (400, 3)
    tmp = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    try:
        zip_bytes = tiny_model(tmp / "model")
        bare_cmd = ["-m", "tests.benchmarks.bare_server", "--data-dir", str(tmp / "bare")]
        with local_server(tmp / "ours") as ours, server_process(bare_cmd, tmp / "bare", "the bare server") as bare:
            samples, cpu = rounds({"bare": (bare, bodies(bare, zip_bytes, False)),
                                   "ours": (ours, bodies(ours, zip_bytes, True))}, count, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mine, theirs = median(samples["ours"]), median(samples["bare"])
    details = [
        f"uploads/s over {count} uploads of a {len(zip_bytes)} B zip from {THREADS} threads: "
        f"ours {spread(samples['ours'])}; bare {spread(samples['bare'])}",
        f"server CPU ms per upload: ours {spread(cpu['ours'], 2)}; bare {spread(cpu['bare'], 2)}",
    ]
    return [Row(f"server throughput: {THREADS} threads, tiny zip", mine, theirs, "uploads/s", details)]
