"""Whether this server can confine runs, and what it refuses when it cannot.

``--isolation auto`` (the default) confines every run with bubblewrap when a
test sandbox starts here, and otherwise runs them unconfined, as the server's
user, for its one local user only: a second user's token and a listening
address beyond loopback are refused, each naming ``--isolation none``, the
explicit way to accept that every user's model can read every other user's
data. ``--isolation bubblewrap`` refuses to start without a sandbox.
"""
from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

MODES = ("auto", "bubblewrap", "none")


class IsolationError(ValueError):
    """The server or the token command refuses; the one-line message says how to proceed."""


@dataclass(frozen=True)
class Isolation:
    mode: str  # "bubblewrap" or "none"
    bwrap: Optional[str] = None  # bubblewrap's path when mode is "bubblewrap"
    reason: str = ""  # why runs are not confined
    accepted: bool = False  # --isolation none: the risk was accepted explicitly

    def describe(self) -> str:
        """The line the server prints at start."""
        if self.mode == "bubblewrap":
            return f"runs are confined: each process in a bubblewrap sandbox ({self.bwrap})"
        if self.accepted:
            return "warning: runs are NOT confined (--isolation none): every user's model can read the data dir"
        return (f"warning: runs are NOT confined ({self.reason}); serving one local user only "
                "(--isolation none accepts the risk)")


def detect(requested: str, data_dir: Path) -> Isolation:
    """The isolation this server gets: bubblewrap if a test sandbox starts, else none."""
    from .runner.local import LocalExecutor
    from .runner.sandbox import find_bwrap

    if requested == "none":
        return Isolation("none", reason="--isolation none was given", accepted=True)
    bwrap = find_bwrap()
    problem = "bubblewrap (bwrap) is not on PATH; install it (apt-get install bubblewrap)" if not bwrap else None
    if problem is None:
        problem = LocalExecutor(data_dir, bwrap).probe()
    if problem is None:
        return Isolation("bubblewrap", bwrap)
    if requested == "bubblewrap":
        raise IsolationError(f"--isolation bubblewrap: runs cannot be confined on this machine: {problem}")
    if sys.platform != "linux":
        problem = f"bubblewrap needs Linux (this is {sys.platform})"
    return Isolation("none", reason=problem)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(isolation: Isolation, host: str) -> None:
    """A listening address beyond loopback needs confined runs (or the risk accepted)."""
    if isolation.mode == "none" and not isolation.accepted and not is_loopback(host):
        raise IsolationError(
            f"--host {host} would serve other people, but runs cannot be confined here ({isolation.reason}), "
            "so any user's model could read every user's data; listen on 127.0.0.1, or accept the risk "
            "with --isolation none"
        )


def check_tls(host: str, tls: bool, insecure_http: bool) -> None:
    """A listening address beyond loopback needs HTTPS: tokens would cross the network."""
    if not is_loopback(host) and not tls and not insecure_http:
        raise IsolationError(
            f"--host {host} listens beyond this machine and tokens would cross the network in clear text; "
            "serve HTTPS with --tls-cert/--tls-key, or pass --insecure-http when a TLS-terminating proxy "
            "is in front of this server"
        )


def check_users(isolation: Isolation, users: Iterable[str], new: Optional[str] = None) -> None:
    """Without confined runs a data dir serves one user: refuse a second one."""
    if isolation.mode != "none" or isolation.accepted:
        return
    names = sorted(set(users) | ({new} if new else set()))
    if len(names) > 1:
        others = ", ".join(repr(n) for n in names if n != new) if new else ", ".join(map(repr, names))
        who = f"a token for a second user ({new!r}; the data dir serves {others})" if new else \
            f"a data dir with several users ({others})"
        raise IsolationError(
            f"refusing {who}: runs cannot be confined here ({isolation.reason}), so one user's model "
            "could read the others' data; accept the risk with --isolation none"
        )
