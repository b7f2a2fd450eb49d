"""What a Ray job of a run is made of: its package, its runtime environment, its metadata.

A job's runtime-env ``working_dir`` is a zip the server builds once per version
(``data_dir/runs/ray/packages/<version id>-<digest>.zip``): the version's own
``model/`` entries, copied from its zip, and ``_blankly/`` (the driver, the
launcher and the ``blankly_external`` hook), every entry dated alike, so the
bytes, and Ray's content hash of them, are the same each time. Ray keeps a
package in the cluster's store by that hash: the version travels to the cluster
once, whatever number of runs use it, and every node a run lands on unpacks it.
A job that needs files of its own (a sweep's points, a ticket for secret files)
gets a copy with them appended, sent once and removed from the server at once.

The model's requirements go to the runtime environment's ``pip`` only when the
cluster's own environment (its probe) does not meet them: Ray then builds a
virtualenv on top of the cluster's packages on each node, once per requirement
set, and a failure there is pip's message (see ray_jobs.build_error).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ...files import private_dir
from . import envs
from .executor import RunFailed, RunLimits, RunRequest
from .folders import check_id
from .local import LOCALE_VARS, SYSTEM_PATH
from .process import LAUNCHER, NICE
from .ray_cluster import ClusterInfo
from .sandbox import HOOK_DIR

DRIVER = Path(__file__).resolve().parent / "ray_job" / "driver.py"
SUPPORT = {"_blankly/driver.py": DRIVER, "_blankly/launch.py": Path(LAUNCHER),
           "_blankly/hook/blankly_external.py": HOOK_DIR / "blankly_external.py"}
ENTRYPOINT = "python _blankly/driver.py"
RUN_VAR = "BLANKLY_MAGICS_RUN"
DATE = (1980, 1, 1, 0, 0, 0)  # every entry's: the same content makes the same bytes
KEEP_PACKAGES = 64  # packages kept on the server (the newest used): a version's is rebuilt when needed


@dataclass
class Staged:
    """A version as a Ray job's package."""

    package: Path
    manifest: dict[str, Any]
    main_script: str
    working_directory: str
    pip: Optional[list[str]]  # requirement lines for the runtime env's pip; None: the cluster's env meets them


def stage(request: RunRequest, cluster: ClusterInfo, packages: Path) -> Staged:
    """The request's version as a package (built once per version); RunFailed with the reason."""
    from ..zipcheck import ZipRejected, inspect_model_zip

    wanted = envs.normalize_version(request.python_version) if request.python_version else cluster.python
    if wanted != cluster.python:
        raise RunFailed(f"python {wanted} is not available on the Ray cluster (its nodes run python "
                        f"{cluster.python}); upload the model for python {cluster.python}")
    try:
        info = inspect_model_zip(request.zip_path)
        with zipfile.ZipFile(request.zip_path) as zf:
            try:
                text = zf.read("model/" + info.requirements).decode("utf-8", "replace")
            except KeyError:
                text = ""
    except ZipRejected as exc:
        raise RunFailed(f"the model zip cannot be run: {exc.message}") from None
    except FileNotFoundError:
        raise RunFailed("the version's zip is missing from the server's data dir") from None
    package = _package(request, packages)
    pip = None
    if not envs.satisfied_here(text, cluster.distributions, cluster.markers):
        from ...requirement_lines import requirement_lines

        pip = requirement_lines(text)
    return Staged(package, info.manifest, info.main_script, info.working_directory, pip)


def _support_digest() -> str:
    digest = hashlib.sha256()
    for name, path in sorted(SUPPORT.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _package(request: RunRequest, packages: Path) -> Path:
    path = packages / f"{check_id('version id', request.version_id)}-{_support_digest()}.zip"
    if path.exists():
        os.utime(path)
        return path
    private_dir(packages)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".zip", dir=packages)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dest, \
                zipfile.ZipFile(request.zip_path) as source:
            for entry in sorted(source.infolist(), key=lambda e: e.filename):
                if entry.filename.startswith("model/") and not entry.is_dir():
                    with source.open(entry) as data:
                        _write(dest, entry.filename, data.read(), (entry.external_attr >> 16) & 0o111)
            for name, file in sorted(SUPPORT.items()):
                _write(dest, name, file.read_bytes(), 0)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _prune(packages)
    return path


def _write(zf: zipfile.ZipFile, name: str, data: bytes, executable: int) -> None:
    entry = zipfile.ZipInfo(name, DATE)
    entry.external_attr = (0o600 | (0o100 if executable else 0)) << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(entry, data)


def _prune(packages: Path) -> None:
    # Another run may be building (a ".build-" file) or pruning at the same time: skip what is
    # not a finished package and what vanishes between the listing and its stat.
    built: list[tuple[float, Path]] = []
    for path in packages.glob("*.zip"):
        if path.name.startswith("."):
            continue
        try:
            built.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue
    built.sort(key=lambda item: item[0], reverse=True)
    for _, old in built[KEEP_PACKAGES:]:
        old.unlink(missing_ok=True)


def job_package(staged: Staged, folder: Path, extra: dict[str, bytes]) -> Path:
    """The package a job is submitted with: the version's, or a copy in ``folder`` with ``extra``
    files added under ``_blankly/`` (the caller removes it once the job is submitted)."""
    if not extra:
        return staged.package
    private_dir(folder)
    path = folder / f"job-{uuid.uuid4().hex[:8]}.zip"
    shutil.copyfile(staged.package, path)
    os.chmod(path, 0o600)
    with zipfile.ZipFile(path, "a") as zf:
        for name, data in extra.items():
            _write(zf, "_blankly/" + name, data, 0)
    return path


def new_marker() -> str:
    """The frame marker of one job (see ray_job/driver.py): the model's output cannot hold it by chance."""
    return f"\x1eblankly_magics:{uuid.uuid4().hex}:"


def run_config(staged: Staged, limits: RunLimits, deadline: bool, marker: str, **extra: Any) -> dict[str, Any]:
    """``BLANKLY_MAGICS_RUN``: what the driver needs to start the model (never a secret)."""
    return {
        "mode": "run", "frame": marker, "main": staged.main_script, "cwd": staged.working_directory,
        "limits": {"ram": limits.ram, "disk": limits.disk, "processes": limits.processes,
                   "timeout": limits.timeout if deadline else None},
        "nice": NICE, "locale": list(LOCALE_VARS), "path": SYSTEM_PATH, **extra,
    }


def runtime_env(staged: Staged, package: Path, config: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = {"working_dir": str(package), "env_vars": {RUN_VAR: json.dumps(config)}}
    if staged.pip is not None:
        env["pip"] = {"packages": staged.pip, "pip_check": False}
    return env


def metadata(request: RunRequest, server_id: str, kind: Optional[str] = None) -> dict[str, str]:
    """The job's metadata, as ``list_jobs`` shows it: the ids it runs for (never a secret)."""
    env = request.env
    data = {
        "blankly_magics": server_id,
        "kind": kind or request.kind,
        "runId": request.run_id,
        "modelId": env.get("MODEL_ID", ""),
        "versionId": request.version_id,
        "projectId": env.get("PROJECT_ID", ""),
        "userId": env.get("UID", ""),
    }
    if request.kind == "backtest" and kind is None:
        data["backtestId"] = env.get("BACKTESTING_ID", "")
    return data


def resources(limits: RunLimits) -> tuple[float, int]:
    """A plan as Ray resources: (CPUs, memory in bytes)."""
    return limits.cpu / 1000, limits.ram << 20


def submission_id(request: RunRequest) -> str:
    return f"blankly-{request.run_id}-{uuid.uuid4().hex[:10]}"
