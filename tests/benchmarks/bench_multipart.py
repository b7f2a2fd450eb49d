"""Model-zip uploads through the real server: python-multipart's streaming parser vs a hand-written splitter.

Two copies of our server run side by side, started the same way: one as shipped,
whose upload receiver takes the body from ``python_multipart.MultipartParser``, and
one whose receiver splits it with a small state machine over ``bytes.find``
(``find_receiver``; everything else, the hashing, caps, temp files, zip check and
version row, is the same code). Threads on kept-alive connections POST model zips
of realistic sizes to ``/model/upload`` on each, in alternating rounds; every answer
must be a success. The zips are built with our bundle: the quickstart model (its
script, blankly.json and the 750-bar price CSV), and models shipping a data file of
incompressible bytes so that the zip is 1 MB and 16 MB. The figure is the server's
CPU time per upload (user + system, all its threads), which the parser adds to;
uploads per second and each body split by the receiver alone, in process, are
printed beside it. Loopback only, bounded in count and in time.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import python_multipart

from .bench_server_throughput import bodies, rounds
from .bench_upload_memory import MB, write_random
from .harness import QUICKSTART, Row, interleaved, local_server, median, server_process, spread

NAME = "multipart"
CHUNK = 64 * 1024  # what the server's socket reads hand the receiver, at most


def quickstart_zip(folder: Path) -> bytes:
    from blankly_magics.export import build_bundle

    return build_bundle(str(QUICKSTART)).zip_bytes()


def data_model_zip(folder: Path, size: int) -> bytes:
    """A model whose zip is about ``size`` bytes: a script and an incompressible data file."""
    from blankly_magics.export import build_bundle

    folder.mkdir(parents=True)
    write_random(folder / "prices.bin", size)
    return build_bundle(["import os\nprint(os.path.getsize('prices.bin'))\n"], base_dir=folder,
                        include=["prices.bin"]).zip_bytes()


def parse_ms(body: bytes, content_type: str, receiver: type, tmp: Path, repeats: int) -> list[float]:
    """Milliseconds for ``receive_upload`` to take ``body`` in CHUNK pieces, with ``receiver`` splitting it."""
    from blankly_magics.server import uploads

    async def pieces():  # noqa: ANN202
        for at in range(0, len(body), CHUNK):
            yield body[at:at + CHUNK]

    async def once() -> float:
        started = time.perf_counter()
        upload = await uploads.receive_upload(content_type, pieces(), tmp, 1 << 30)
        elapsed = time.perf_counter() - started
        upload.discard()
        return elapsed * 1000

    async def all_runs() -> list[float]:
        return [await once() for _ in range(repeats)]

    shipped = uploads._Receiver
    uploads._Receiver = receiver
    try:
        return asyncio.run(all_runs())
    finally:
        uploads._Receiver = shipped


def parser_alone(body: bytes, headers: dict, tmp: Path, repeats: int) -> str:
    from blankly_magics.server import uploads

    from .find_receiver import FindReceiver

    content_type = headers["Content-Type"]
    samples = interleaved({
        "ours": lambda: median(parse_ms(body, content_type, uploads._Receiver, tmp, repeats)),
        "find": lambda: median(parse_ms(body, content_type, FindReceiver, tmp, repeats)),
    }, 3)
    return (f"the receiver alone, ms per body in {CHUNK // 1024} KB pieces: python-multipart "
            f"{spread(samples['ours'], 3)}; bytes.find splitter {spread(samples['find'], 3)}")


def run(quick: bool = False) -> list[Row]:
    # (label, how to build the zip, threads, uploads per round)
    if quick:
        cases = [("quickstart zip", quickstart_zip, 4, 40), ("1 MB zip", lambda f: data_model_zip(f, MB), 2, 6)]
        repeats = 1
    else:
        cases = [("quickstart zip", quickstart_zip, 4, 400), ("1 MB zip", lambda f: data_model_zip(f, MB), 4, 120),
                 ("16 MB zip", lambda f: data_model_zip(f, 16 * MB), 2, 24)]
        repeats = 7
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-multipart-"))
    try:
        find_cmd = ["-m", "tests.benchmarks.find_receiver", "--host", "127.0.0.1", "--port", "0",
                    "--data-dir", str(tmp / "find")]
        (tmp / "parse").mkdir()
        with local_server(tmp / "ours") as ours, server_process(find_cmd, tmp / "find", "the splitter's server") as find:
            for i, (label, build, threads, count) in enumerate(cases):
                zip_bytes = build(tmp / f"model-{i}")
                ours_bodies = bodies(ours, zip_bytes, True, threads)
                rates, cpu = rounds({"find": (find, bodies(find, zip_bytes, True, threads)),
                                     "ours": (ours, ours_bodies)}, count, repeats)
                details = [
                    f"server CPU ms per upload: python-multipart {spread(cpu['ours'], 2)}; "
                    f"bytes.find splitter {spread(cpu['find'], 2)}",
                    f"uploads/s over {count} uploads of a {len(zip_bytes)} B zip from {threads} threads: "
                    f"python-multipart {spread(rates['ours'])}; bytes.find splitter {spread(rates['find'])}",
                    parser_alone(ours_bodies[0][0], ours_bodies[0][1], tmp / "parse", 3 if quick else 20),
                    f"python-multipart {python_multipart.__version__}",
                ]
                rows.append(Row(f"multipart: {label}, server CPU per upload", median(cpu["ours"]),
                                median(cpu["find"]), "ms", details))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
