"""The server's settings and its plans (the CPU, memory, time, disk and process limits a run may use)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .runner import RunLimits
from .zipcheck import ZipLimits

PLAN_KINDS = ("backtesting", "live")
MB = 1024 * 1024

# {"backtesting": {"small": {"cpu": 1000, "ram": 2048, "timeout": 900, "disk": 1024, "processes": 64}, ...},
#  "live": {...}}
MAX_DEFAULT_DISK = 2048  # MB: no default plan lets a run write more than 2 GB
Plans = dict[str, dict[str, dict[str, Any]]]


class PlansError(ValueError):
    """A plans file that cannot be used; the message says which entry and why."""


def default_data_dir() -> Path:
    """Where the server keeps its data unless told: the embedded server's home, so
    ``%blankly_login`` and a hand-started server share one ($BLANKLY_MAGICS_HOME, else XDG)."""
    from ..embedded import data_home

    return data_home()


def _machine() -> tuple[int, int]:
    """(cores, total RAM in MB) of this machine."""
    cores = os.cpu_count() or 1
    try:
        import psutil

        ram = int(psutil.virtual_memory().total // MB)
    except Exception:  # psutil missing or unsupported platform: assume a small laptop
        ram = 4096
    return cores, ram


def default_plans(cores: Optional[int] = None, ram_mb: Optional[int] = None) -> Plans:
    """Plans sized from this machine, smallest first; none asks for more than it has."""
    if cores is None or ram_mb is None:
        cores, ram_mb = _machine()
    all_cpu = cores * 1000
    # (name, cpu, ram, timeout, disk MB, processes)
    backtesting = [
        ("small", 1000, min(2048, ram_mb // 4), 900, 1024, 64),
        ("medium", min(2000, all_cpu), min(4096, ram_mb // 2), 1800, 2048, 128),
        ("large", all_cpu, ram_mb * 3 // 4, 3600, MAX_DEFAULT_DISK, 256),
    ]
    live = [
        ("nano", 250, min(512, ram_mb // 8), 0, 512, 32),
        ("micro", 500, min(1024, ram_mb // 4), 0, 1024, 64),
        ("small", 1000, min(2048, ram_mb // 4), 0, 1024, 64),
        ("medium", min(2000, all_cpu), min(4096, ram_mb // 2), 0, MAX_DEFAULT_DISK, 128),
    ]
    plans: Plans = {"backtesting": {}, "live": {}}
    seen: set[tuple[str, int, int]] = set()
    for kind, rows in (("backtesting", backtesting), ("live", live)):
        for name, cpu, ram, timeout, disk, processes in rows:
            if (kind, cpu, ram) in seen:  # a small machine collapses sizes: keep one of each
                continue
            seen.add((kind, cpu, ram))
            plan: dict[str, Any] = {"cpu": cpu, "ram": max(ram, 128)}
            if timeout:
                plan["timeout"] = timeout
            plan.update(disk=disk, processes=processes)
            plans[kind][name] = plan
    return plans


def _positive(value: Any, where: str, kind: type = int) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise PlansError(f"{where} must be a positive number, got {value!r}")
    if kind is int and value != int(value):
        raise PlansError(f"{where} must be a whole number, got {value!r}")
    return kind(value)


def validate_plans(raw: Any, source: str = "plans") -> Plans:
    """Check a plans mapping; a kind left out keeps this machine's defaults."""
    if not isinstance(raw, dict):
        raise PlansError(f"{source}: expected a JSON object with 'backtesting' and/or 'live'")
    unknown = set(raw) - set(PLAN_KINDS)
    if unknown:
        raise PlansError(f"{source}: unknown plan type(s) {sorted(unknown)}; use {list(PLAN_KINDS)}")
    plans = default_plans()
    for kind in PLAN_KINDS:
        if kind not in raw:
            continue
        entries = raw[kind]
        if not isinstance(entries, dict) or not entries:
            raise PlansError(f"{source}: '{kind}' must be a non-empty object of plans")
        checked: dict[str, dict[str, Any]] = {}
        for name, spec in entries.items():
            where = f"{source}: {kind} plan {name!r}"
            if not isinstance(spec, dict):
                raise PlansError(f"{where} must be an object like {{\"cpu\": 1000, \"ram\": 2048}}")
            entry = dict(spec)
            entry["cpu"] = _positive(spec.get("cpu"), f"{where} cpu (millicores)")
            entry["ram"] = _positive(spec.get("ram"), f"{where} ram (MB)")
            if kind == "backtesting":
                entry["timeout"] = _positive(spec.get("timeout", 900), f"{where} timeout (s)", float)
            entry["disk"] = _positive(spec.get("disk", 1024), f"{where} disk (MB)")
            entry["processes"] = _positive(spec.get("processes", 64), f"{where} processes")
            checked[str(name)] = entry
        plans[kind] = checked
    return plans


def load_plans(path: str | Path) -> Plans:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlansError(f"cannot read plans file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PlansError(f"plans file {path} is not valid JSON: {exc}") from None
    return validate_plans(raw, str(path))


def plan_limits(plan: dict[str, Any]) -> RunLimits:
    return RunLimits(
        cpu=int(plan["cpu"]), ram=int(plan["ram"]), timeout=float(plan.get("timeout", 900.0)),
        disk=int(plan.get("disk", 1024)), processes=int(plan.get("processes", 64)),
    )


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8127
    token_ttl: int = 3600  # seconds an idToken stays valid
    max_upload: int = 100 * MB  # bytes of zip accepted in one upload
    plans: Plans = field(default_factory=default_plans)
    max_workers: Optional[int] = None  # concurrent backtests; None lets the runner use the cores
    warm_workers: Optional[int] = None  # idle warm workers; None sizes them from the machine, 0: none
    max_queue: int = 100  # backtests waiting at once before new ones get 429
    log_level: str = "info"
    zip_limits: ZipLimits = field(default_factory=ZipLimits)
    isolation: str = "auto"  # "auto" (detected at start), "bubblewrap" or "none" (see isolation.py)
    bwrap: Optional[str] = None  # bubblewrap's path when isolation is "bubblewrap"
    run_network: bool = True  # False: runs get a network namespace with loopback only
    exchange_key_file: Optional[Path] = None  # the key sealing users' exchange keys (None: in the data dir)
    executor: str = "local"  # "local" (this machine, see isolation) or "ray" (a Ray cluster's jobs)
    ray_address: str = ""  # the Ray cluster's dashboard (job API) URL, with executor "ray"
    ray_schedule_wait: float = 60.0  # seconds a run waits for a node with its plan's resources
    ray_secrets_listen: str = "127.0.0.1:0"  # where the desk handing runs their secret files listens
    ray_secrets_url: str = ""  # how the cluster's jobs reach that desk ("": its listening address)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())

    @property
    def exchange_key_path(self) -> Path:
        from .keyring import KEY_FILE

        return Path(self.exchange_key_file).expanduser().resolve() if self.exchange_key_file else \
            self.data_dir / KEY_FILE
