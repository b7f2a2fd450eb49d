"""Real Ray clusters on this machine for the tests and benchmarks: loopback only, stopped by process group.

``start_head()`` runs ``ray start --head --block`` in a process group of its own;
``start_cluster(nodes)`` runs a ``ray.cluster_utils.Cluster`` of several nodes
(one raylet each, all on this machine) in a child process, so the test process
never joins a cluster. Either way every address is loopback: Ray turns
``--node-ip-address 127.0.0.1`` into the machine's own address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` says it runs on one machine, and the
dashboard listens on 127.0.0.1. Ports are free ones picked here (a second head on
the machine would otherwise collide on Ray's fixed defaults, like the dashboard
agent's 52365), the temp dir is short (Unix socket paths are limited), and
``stop()`` ends the whole process group (SIGTERM, then SIGKILL) and any process
of the cluster that left it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 300.0  # two shared cores: a head takes 10-40 s to come up, minutes when they are busy
# Loopback only, no usage stats, and patience: on a loaded machine a raylet registers slowly.
HEAD_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_raylet_start_wait_time_s": "300"}

CLUSTER = r"""
import json, os, signal, sys, time
from ray.cluster_utils import Cluster
spec = json.loads(sys.argv[1])
head = {"num_cpus": spec["cpus"], "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": spec["dashboard"], "dashboard_agent_listen_port": spec["agents"][0],
        "ray_client_server_port": spec["client"], "temp_dir": spec["temp"], "object_store_memory": 100 << 20}
cluster = Cluster(initialize_head=True, head_node_args=head)
for port in spec["agents"][1:]:
    cluster.add_node(num_cpus=spec["cpus"], dashboard_agent_listen_port=port, object_store_memory=100 << 20)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("READY", flush=True)
while not stop:
    time.sleep(0.2)
cluster.shutdown()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RayHead:
    """A running local cluster: its dashboard address and the process group to end."""

    address: str
    proc: subprocess.Popen
    temp_dir: Path
    log: Path
    nodes: int
    _members: list[Any] = field(default_factory=list)

    def client(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address)

    def jobs(self, **metadata: str) -> list[Any]:
        """The cluster's jobs whose metadata has these values."""
        return [j for j in self.client().list_jobs()
                if all((j.metadata or {}).get(k) == v for k, v in metadata.items())]

    def stop(self) -> None:
        import psutil

        try:
            members = psutil.Process(self.proc.pid).children(recursive=True) + self._members
        except psutil.Error:
            members = list(self._members)
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        alive = [p for p in members if p.is_running()]
        for proc in alive:  # workers Ray started in sessions of their own
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def remember_members(self) -> None:
        """Note the cluster's processes now (its workers leave the group), for stop()."""
        import psutil

        try:
            self._members = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            pass


def _environment(temp_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HEAD_ENV)
    env["RAY_TMPDIR"] = str(temp_dir)
    return env


def _wait_ready(head: RayHead) -> RayHead:
    from ray.util.state import list_nodes

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if head.proc.poll() is not None:
            text = head.log.read_text()[-3000:]
            head.stop()
            raise RuntimeError(f"the Ray head exited ({head.proc.returncode}):\n{text}")
        try:
            head.client()
            if len([n for n in list_nodes(address=head.address) if n.state == "ALIVE"]) >= head.nodes:
                head.remember_members()
                return head
        except Exception:
            pass
        time.sleep(0.5)
    text = head.log.read_text()[-3000:]
    head.stop()
    raise RuntimeError(f"the Ray cluster did not come up in {START_TIMEOUT:g} s:\n{text}")


def start_head(cpus: int = 2) -> RayHead:
    """``ray start --head --block`` on loopback, in its own process group."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    (temp_dir / "ray").mkdir()
    dashboard = free_port()
    command = [
        sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(free_port()), "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", str(free_port()),
        "--ray-client-server-port", str(free_port()), "--num-cpus", str(cpus), "--include-dashboard", "true",
        "--object-store-memory", str(100 << 20), "--temp-dir", str(temp_dir), "--disable-usage-stats",
    ]
    log = temp_dir / "head.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_environment(temp_dir), start_new_session=True)
    return _wait_ready(RayHead(f"http://127.0.0.1:{dashboard}", proc, temp_dir, log, 1))


def start_cluster(nodes: int = 3, cpus: int = 1) -> RayHead:
    """``nodes`` raylets on this machine (``ray.cluster_utils.Cluster``) in a child's process group."""
    import json

    temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    (temp_dir / "ray").mkdir()
    dashboard = free_port()
    spec = {"cpus": cpus, "dashboard": dashboard, "client": free_port(), "temp": str(temp_dir),
            "agents": [free_port() for _ in range(nodes)]}
    log = temp_dir / "cluster.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", CLUSTER, json.dumps(spec)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_environment(temp_dir),
                                start_new_session=True)
    return _wait_ready(RayHead(f"http://127.0.0.1:{dashboard}", proc, temp_dir, log, nodes))
