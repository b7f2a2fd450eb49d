"""A real Jupyter server with real kernels, driven through its REST API as JupyterLab drives it.

``jupyter_server(root, runtime)`` yields a ``Jupyter`` handle: ``.api(method, path, body)``,
``.start_session(path)`` (a kernel for a notebook, as opening it does), ``.rename(session, new)``
(the file, then the session: what "Rename" and the first "Save" do) and ``.run(session, code)``
(the code in that kernel; what it printed).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from tests.fixtures_home import free_port

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Jupyter:
    base: str
    token: str
    runtime: Path

    def api(self, method: str, path: str, body: Optional[dict] = None) -> object:
        request = urllib.request.Request(
            self.base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
        with opener.open(request, timeout=30) as reply:
            return json.loads(reply.read() or b"null")

    def start_session(self, path: str) -> dict:
        """A kernel for ``path``, as opening the notebook starts one."""
        return self.api("POST", "/api/sessions", {"path": path, "name": Path(path).name, "type": "notebook",
                                                  "kernel": {"name": "python3"}})

    def rename(self, session: dict, new: str) -> None:
        from urllib.parse import quote

        old = session["path"]
        self.api("PATCH", f"/api/contents/{quote(old)}", {"path": new})
        self.api("PATCH", f"/api/sessions/{session['id']}", {"path": new, "name": Path(new).name})
        session["path"] = new

    def run(self, session: dict, code: str) -> str:
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient()
        client.load_connection_file(str(self.runtime / f"kernel-{session['kernel']['id']}.json"))
        client.start_channels()
        try:
            for attempt in range(3):  # a loaded machine can miss a heartbeat: "died" is then no death
                try:
                    client.wait_for_ready(timeout=60)
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
                    time.sleep(1)
            out: list[str] = []
            reply = client.execute_interactive(
                code, timeout=120,
                output_hook=lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None,
            )
            assert reply["content"]["status"] == "ok", reply["content"]
            return "".join(out)
        finally:
            client.stop_channels()


@contextmanager
def jupyter_server(root: Path, runtime: Path) -> Iterator[Jupyter]:
    token, port = "test-token-123", free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime), PYTHONPATH=str(REPO))
    env.pop("JPY_SESSION_NAME", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    jupyter = Jupyter(f"http://127.0.0.1:{port}", token, runtime)
    try:
        for _ in range(600):
            assert server.poll() is None, "jupyter server exited"
            try:
                if list(runtime.glob("jpserver-*.json")) and jupyter.api("GET", "/api/status"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        yield jupyter
    finally:
        try:
            for s in jupyter.api("GET", "/api/sessions"):  # type: ignore[union-attr]
                jupyter.api("DELETE", f"/api/sessions/{s['id']}")
        except Exception:  # noqa: BLE001 - the server is stopped below either way
            pass
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
