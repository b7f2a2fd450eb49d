"""The throughput baseline: a bare Starlette endpoint that only streams the body to disk.

    python -m tests.benchmarks.bare_server --data-dir DIR

Served exactly as our server is (uvicorn, one process, access log on, a socket
bound to a free loopback port), and like it writes ``DIR/server.json`` once it
accepts connections. No parsing, no checks, no database: the upper bound for
any upload route on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app(store: Path) -> Starlette:
    async def upload(request: Request) -> JSONResponse:
        fd, _ = tempfile.mkstemp(prefix="upload-", dir=store)
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                fh.write(chunk)
        return JSONResponse({"status": "success"})

    return Starlette(routes=[Route("/model/upload", upload, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bare_server")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    store = args.data_dir / "uploads"
    store.mkdir(parents=True, exist_ok=True)
    # proto IPPROTO_TCP, as getaddrinfo gives our server: with proto 0 asyncio would not set
    # TCP_NODELAY and every answer would wait ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets)
            tmp = args.data_dir / "server.json.tmp"
            tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
            os.replace(tmp, args.data_dir / "server.json")

    config = uvicorn.Config(create_app(store), log_level="info", access_log=True, lifespan="on", ws="none",
                            server_header=False)
    _Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
