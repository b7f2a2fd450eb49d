"""A run's secret files on a Ray cluster: handed over once, on request, never shipped with the job.

Everything a Ray job is submitted with can be read back by anyone who can reach
the cluster's job API (``list_jobs`` shows the metadata, the entrypoint and the
runtime environment's variables; the working directory is kept in the cluster's
store for the job's life). So a run's ``secret_files`` (exchange keys) travel
neither way. Instead, per job start, the server issues a ticket: 32 random bytes
in a small file of the job's working directory (``_blankly/ticket.json``, with the
desk's URL). The job's driver, on the node it landed on, posts the ticket to this
desk once and gets the files back; it writes them 0600 into the run's private
folder, which it removes when the model ends. A ticket is good for one fetch and
for ``TICKET_TTL`` seconds, whichever comes first; a second fetch of the same
ticket (someone who read the working directory racing the job) is refused, and
the job then fails saying so rather than run without its keys.

The desk is a small HTTP listener of its own (``--ray-secrets-listen``, by default
127.0.0.1 on a free port: a cluster on this machine only), started with the first
ticket. Jobs reach it at ``--ray-secrets-url`` (by default the listening address);
a cluster on other machines needs an address it can reach (docs/server/ray.md).
Nothing here logs a request: the desk answers a ticket and nothing else.
"""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

TICKET_TTL = 600.0
BODY_MAX = 4096


class TicketDesk:
    """Issues one-use tickets for secret files and answers them over HTTP."""

    def __init__(self, listen: str = "127.0.0.1:0", url: str = "") -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port or 0)
        self.url = url.rstrip("/")
        self._tickets: dict[str, tuple[float, dict[str, bytes]]] = {}
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    def issue(self, files: dict[str, bytes]) -> dict[str, str]:
        """A ticket for ``files``: what the job's ``_blankly/ticket.json`` holds."""
        self._open()
        ticket = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            for old in [t for t, (expires, _) in self._tickets.items() if expires < now]:
                del self._tickets[old]
            self._tickets[ticket] = (now + TICKET_TTL, dict(files))
        return {"url": f"{self.url}/ticket", "ticket": ticket}

    def redeem(self, ticket: str) -> Optional[dict[str, bytes]]:
        """The files of a valid, unused ticket (then spent), or None."""
        with self._lock:
            entry = self._tickets.pop(ticket, None)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def revoke(self, ticket: str) -> None:
        with self._lock:
            self._tickets.pop(ticket, None)

    def _open(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            desk = self

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                    length = int(self.headers.get("Content-Length") or 0)
                    files = None
                    if 0 < length <= BODY_MAX:
                        try:
                            files = desk.redeem(str(json.loads(self.rfile.read(length))["ticket"]))
                        except (ValueError, KeyError, TypeError):
                            files = None
                    if files is None:
                        self._answer(404, {"error": "unknown, used or expired ticket"})
                    else:
                        self._answer(200, {"files": {n: base64.b64encode(d).decode() for n, d in files.items()}})

                def _answer(self, status: int, body: dict) -> None:
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

                def log_message(self, format: str, *args: object) -> None:  # never log a request
                    pass

            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
            self._server.daemon_threads = True
            host, port = self._server.server_address[:2]
            if not self.url:
                self.url = f"http://{'[%s]' % host if ':' in str(host) else host}:{port}"
            threading.Thread(target=self._server.serve_forever, name="ray-secrets", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            self._tickets.clear()
        if server is not None:
            server.shutdown()
            server.server_close()
