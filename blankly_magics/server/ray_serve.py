"""``--executor ray``: the serve options for runs on a Ray cluster, and what is checked before listening.

The cluster must answer at ``--ray-address`` (one line naming the address
otherwise). Runs there are not confined from one another (docs/server/security.md),
so the server holds them to what it holds unconfined local runs to: one user, on
loopback, unless ``--isolation none`` accepts the risk. Without ``--plans`` the
default plans are sized from the cluster's largest node, not from this machine.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Optional


def add_options(parser: argparse.ArgumentParser, seconds: Callable[[str], Any]) -> None:
    ray = parser.add_argument_group("runs on a Ray cluster (docs/server/ray.md)")
    ray.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="where runs go: local (default: processes on this machine, see --isolation) or ray (jobs of the "
        "Ray cluster at --ray-address; needs pip install 'blankly_magics[ray]')",
    )
    ray.add_argument("--ray-address", default="", metavar="URL",
                     help="the Ray cluster's dashboard (job API) address, e.g. http://127.0.0.1:8265")
    ray.add_argument(
        "--ray-schedule-wait", type=seconds, default=60.0, metavar="SECONDS",
        help="how long a run waits for a node with its plan's CPUs and memory before it fails (default 60; "
        "more for a cluster that adds nodes on demand)",
    )
    ray.add_argument(
        "--ray-secrets-listen", default="127.0.0.1:0", metavar="HOST:PORT",
        help="where jobs fetch their run's secret files (exchange keys), once per start (default 127.0.0.1 on "
        "a free port: a cluster on this machine only)",
    )
    ray.add_argument("--ray-secrets-url", default="", metavar="URL",
                     help="how the cluster's jobs reach --ray-secrets-listen (default: its address)")


def isolation(args: argparse.Namespace) -> Any:
    """What runs on a Ray cluster are confined by (nothing from one another); the cluster must answer."""
    from .isolation import Isolation, IsolationError

    if not args.ray_address:
        raise IsolationError("--executor ray needs --ray-address URL: the Ray dashboard's address, "
                             "e.g. http://127.0.0.1:8265")
    if args.isolation == "bubblewrap":
        raise IsolationError("--isolation bubblewrap confines runs on this machine; with --executor ray they "
                             "run on the cluster, where bubblewrap is not used (docs/server/security.md)")
    if args.run_network == "off":
        raise IsolationError("--run-network off needs this machine's sandboxes; runs on a Ray cluster have its "
                             "nodes' network")
    from .runner.ray_cluster import connect

    try:
        connect(args.ray_address)
    except ImportError:
        raise IsolationError("--executor ray needs Ray: pip install 'blankly_magics[ray]'") from None
    reason = f"runs go to the Ray cluster at {args.ray_address}, which does not confine one job from another"
    return Isolation("none", reason=reason, accepted=args.isolation == "none")


def cluster_plans(address: str) -> Optional[dict[str, Any]]:
    """The default plans sized from the Ray cluster's largest node (None while it has no CPUs)."""
    from .config import MB, default_plans
    from .runner.executor import RunFailed
    from .runner.ray_cluster import RayCluster

    try:
        nodes = RayCluster(address).nodes()
    except RunFailed:  # the plans of this machine then; runs still go to the cluster
        return None
    cores = int(max((n.get("CPU", 0) for n in nodes), default=0))
    ram = int(max((n.get("memory", 0) for n in nodes), default=0) // MB)
    return default_plans(cores, ram) if cores and ram else None
