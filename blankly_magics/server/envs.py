"""Choosing the interpreter a model runs with, and building cached venvs.

The usual case on a laptop: the model asks for the server's own Python and
everything in its requirements file is already installed here, so it runs with
``sys.executable`` at once. Otherwise a virtual environment is built for the
requested Python with ``pip install -r requirements.txt`` and cached under
``data_dir/envs/<hash>`` so the next run of the same requirements is instant.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

SERVER_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
_VERSION_RE = re.compile(r"^python(\d+\.\d+)$")
_PIP_TAIL = 4000  # characters of pip's output kept in an error message
_PIP_TIMEOUT = 1800.0


class EnvError(RuntimeError):
    """The model's environment cannot be prepared; the message says why (pip's tail included)."""


@dataclass(frozen=True)
class Interpreter:
    """The python a run uses; ``env_dir`` is None when it is the server's own."""

    python: Path
    version: str
    env_dir: Optional[Path] = None

    @property
    def shared(self) -> bool:
        return self.env_dir is None


def normalize_version(python_version: Optional[str]) -> str:
    """'3.11', '3.11.7', 'python3.11', '' or None -> 'X.Y' (None/'' -> the server's)."""
    text = (python_version or "").strip().lower()
    if text.startswith("python"):
        text = text[len("python"):]
    if not text:
        return SERVER_VERSION
    m = re.match(r"^(\d+)\.(\d+)(?:\.\d+)?$", text)
    if not m:
        raise EnvError(f"python version {python_version!r} is not of the form X.Y (e.g. 3.11)")
    return f"{int(m.group(1))}.{int(m.group(2))}"


def _pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def _is_shim_dir(directory: Path) -> bool:
    # pyenv shims only work for the selected version; they fail for the others.
    return directory.name == "shims"


def find_pythons() -> dict[str, Path]:
    """Map X.Y -> an interpreter path, from PATH (not shims) and pyenv's versions.

    Only looks at file names, so it is cheap; the server's own version always wins.
    """
    found: dict[str, Path] = {}
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        directory = Path(entry) if entry else None
        if directory is None or _is_shim_dir(directory) or not directory.is_dir():
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            m = _VERSION_RE.match(name)
            if m and m.group(1) not in found and os.access(directory / name, os.X_OK):
                found[m.group(1)] = directory / name
    versions = _pyenv_root() / "versions"
    if versions.is_dir():
        for child in sorted(versions.iterdir()):
            m = re.match(r"^(\d+)\.(\d+)\.\d+$", child.name)
            if not m:
                continue
            xy = f"{m.group(1)}.{m.group(2)}"
            exe = child / "bin" / f"python{xy}"
            if xy not in found and os.access(exe, os.X_OK):
                found[xy] = exe
    found[SERVER_VERSION] = Path(sys.executable)
    return found


def python_versions() -> list[str]:
    """X.Y versions this machine can run models with, oldest first."""
    return sorted(find_pythons(), key=lambda v: tuple(int(p) for p in v.split(".")))


# ---------------------------------------------------------------- requirements

def _requirement_lines(text: str) -> list[str]:
    """Requirement specifiers from a requirements file; options (-r, -e, --index-url) kept as-is."""
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith("#"):
            line = ""
        if line:
            lines.append(line)
    return lines


def satisfied_here(requirements_text: str) -> bool:
    """True when every requirement is already met by the server's environment.

    Anything we cannot judge (pip options, URLs, unparsable lines) counts as
    not satisfied, so such a model gets its own venv rather than a wrong env.
    """
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    for line in _requirement_lines(requirements_text):
        if line.startswith("-"):
            return False
        try:
            req = Requirement(line)
        except InvalidRequirement:
            return False
        if req.url:
            return False
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            return False
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            return False
    return True


# ---------------------------------------------------------------- venv cache

def env_key(version: str, requirements_text: str) -> str:
    digest = hashlib.sha256()
    digest.update(version.encode())
    digest.update(b"\0")
    digest.update(requirements_text.encode())
    return digest.hexdigest()


_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _venv_python(env_dir: Path, version: str) -> Path:
    return env_dir / "bin" / "python"


def _tail(text: str, limit: int = _PIP_TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class _Cancelled(Exception):
    pass


def _run_logged(
    cmd: list[str],
    log: Optional[Callable[[str], None]],
    timeout: float,
    *,
    stop: Optional[threading.Event] = None,
    track: Optional[Callable[[subprocess.Popen], Callable[[], None]]] = None,
    env_extra: Optional[dict] = None,
) -> tuple[int, str]:
    """Run a build step in its own process group; return (exit code, its output).

    Output is streamed to ``log`` line by line. ``stop`` (set by a cancel or a
    server shutdown) and ``timeout`` kill the whole group; ``track`` lets the
    runner record the process so a restarted server can kill it.
    """
    if log:
        log("$ " + " ".join(cmd) + "\n")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1",
           "PIP_NO_INPUT": "1", **(env_extra or {})}
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, start_new_session=True,
    )
    untrack = track(proc) if track else None
    lines: list[str] = []

    def pump() -> None:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if len(lines) > 2000:
                del lines[:1000]
            if log:
                log(line)
        proc.stdout.close()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if stop is not None and stop.is_set():
                _kill_group(proc)
                raise _Cancelled()
            if time.monotonic() > deadline:
                _kill_group(proc)
                raise subprocess.TimeoutExpired(cmd, timeout)
        reader.join(10)
    finally:
        if untrack:
            untrack()
    return code, "".join(lines)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def build_env(
    envs_dir: Path,
    version: str,
    requirements_text: str,
    *,
    log: Optional[Callable[[str], None]] = None,
    timeout: float = _PIP_TIMEOUT,
    stop: Optional[threading.Event] = None,
    track: Optional[Callable[[subprocess.Popen], Callable[[], None]]] = None,
    env_extra: Optional[dict] = None,
) -> Interpreter:
    """Return the cached venv for (version, requirements), building it if needed.

    Built in a temp dir beside the cache and renamed into place, so a crash
    never leaves a half env that looks ready; a per-key lock stops two runs
    building the same env at once (in this process; across processes the
    rename decides and the loser's copy is dropped).
    """
    pythons = find_pythons()
    base = pythons.get(version)
    if base is None:
        raise EnvError(
            f"python {version} is not available on this machine "
            f"(available: {', '.join(python_versions())})"
        )
    key = env_key(version, requirements_text)
    envs_dir = Path(envs_dir)
    final = envs_dir / key
    with _lock_for(key):
        if (final / ".ready").exists():
            return Interpreter(_venv_python(final, version), version, final)
        envs_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=envs_dir))
        try:
            step = dict(stop=stop, track=track, env_extra=env_extra)
            code, out = _run_logged([str(base), "-m", "venv", str(tmp)], log, 300, **step)
            if code != 0:
                raise EnvError(f"creating a python {version} venv failed:\n{_tail(out)}")
            req_file = tmp / "requirements.txt"
            req_file.write_text(requirements_text)
            code, out = _run_logged(
                [str(tmp / "bin" / "python"), "-m", "pip", "install", "--no-input",
                 "-r", str(req_file)],
                log,
                timeout,
                **step,
            )
            if code != 0:
                raise EnvError(f"pip install -r requirements.txt failed:\n{_tail(out)}")
            (tmp / ".ready").write_text(version + "\n")
            try:
                os.replace(tmp, final)
            except OSError:
                # Another process finished first: use theirs.
                if not (final / ".ready").exists():
                    raise
        except subprocess.TimeoutExpired:
            raise EnvError(f"building the environment took longer than {int(timeout)} s") from None
        except _Cancelled:
            raise EnvError("stopped while building the environment") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    # A venv's scripts embed its path, so it was built with the temp path: the
    # interpreter itself works after the rename (bin/python is a symlink and
    # pyvenv.cfg names the base), which is all we run.
    return Interpreter(_venv_python(final, version), version, final)


def select_python(
    python_version: Optional[str],
    requirements_file: Optional[Path],
    envs_dir: Optional[Path] = None,
    *,
    log: Optional[Callable[[str], None]] = None,
    **build: Any,
) -> Interpreter:
    """The interpreter for a run: the server's own when it fits, else a cached venv.

    ``build`` goes to build_env (stop, track, env_extra, timeout).
    """
    version = normalize_version(python_version)
    text = ""
    if requirements_file is not None and Path(requirements_file).is_file():
        text = Path(requirements_file).read_text(encoding="utf-8", errors="replace")
    if version == SERVER_VERSION and satisfied_here(text):
        return Interpreter(Path(sys.executable), version, None)
    if envs_dir is None:
        raise EnvError("no envs directory given to build a venv in")
    return build_env(Path(envs_dir), version, text, log=log, **build)
