"""Choosing the interpreter a model runs with, and building cached venvs.

The usual case on a laptop: the model asks for the server's own Python and
everything in its requirements file is already installed here, so it runs with
``sys.executable`` at once. Otherwise a virtual environment is built for the
requested Python with ``pip install -r requirements.txt`` and cached under
``data_dir/envs/<hash>`` so the next run of the same requirements is instant.

A build runs its steps through a ``Builder``: the run's own sandbox where runs
are confined (local.py), plain processes otherwise (``Unconfined``). pip runs
a requirement's build scripts, which are the model author's code like the
model itself.

A build's output goes to a ``building.BuildLog`` beside the run's log, not into it.
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
from typing import Callable, Optional, Protocol

from ...files import private_dir
from .folders import write_new

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
    base: Optional[Path] = None  # the interpreter a venv was made from

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

def satisfied_here(requirements_text: str, installed: Optional[dict[str, str]] = None,
                   markers: Optional[dict[str, str]] = None) -> bool:
    """True when every requirement is already met by the server's environment (or by another
    one: ``installed`` maps canonical project names to versions, ``markers`` is its PEP 508
    environment, as a Ray cluster's probe reports them).

    Anything we cannot judge (pip options, URLs, unparsable lines) counts as
    not satisfied, so such a model gets its own venv rather than a wrong env.
    """
    from importlib import metadata

    from ...requirement_lines import canonical_name, parse_requirement, requirement_lines

    for line in requirement_lines(requirements_text):
        req = parse_requirement(line)
        if req is None or req.url:
            return False
        if req.marker is not None and not req.marker.evaluate(markers):
            continue
        try:
            installed_version = (metadata.version(req.name) if installed is None
                                 else installed[canonical_name(req.name)])
        except (metadata.PackageNotFoundError, KeyError):
            return False
        if req.specifier and not req.specifier.contains(installed_version, prereleases=True):
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


class StepFailed(Exception):
    """A build step was stopped (a cancel, a server shutdown, a limit): the message says why."""


class Builder(Protocol):
    """Runs the steps of an environment build: inside the run's sandbox where runs are confined."""

    def env_path(self, build_dir: Path) -> str:
        """The build folder as the steps see it (the venv is made there)."""

    def run(self, argv: list[str], build_dir: Path, base: Path, timeout: float) -> tuple[int, str]:
        """Run one step with the build folder writable; (exit code, the end of its output).
        ``base`` is the interpreter the venv is made from. StepFailed when it was stopped."""


def build_env(
    envs_dir: Path,
    version: str,
    requirements_text: str,
    builder: Builder,
    *,
    timeout: float = _PIP_TIMEOUT,
) -> Interpreter:
    """Return the cached venv for (version, requirements), building it if needed.

    Built in a temp dir beside the cache and renamed into place, so a crash
    never leaves a half env that looks ready; a per-key lock stops two runs
    building the same env at once (in this process; across processes the
    rename decides and the loser's copy is dropped). The venv is made where the
    builder's steps see the build folder, which is where runs see it later
    (sandbox.SANDBOX_VIEW.env), so its own paths stay right after the rename.
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
            return Interpreter(_venv_python(final, version), version, final, base)
        private_dir(envs_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=envs_dir))
        os.chmod(tmp, 0o755)  # every run's sandbox reads the finished env
        try:
            inside = builder.env_path(tmp)
            code, out = builder.run([str(base), "-m", "venv", inside], tmp, base, 300)
            if code != 0:
                raise EnvError(f"creating a python {version} venv failed:\n{_tail(out)}")
            # Written by the server into a folder the build can write: never through a link it left.
            write_new(tmp / "requirements.txt", requirements_text.encode(), 0o644)
            code, out = builder.run(
                [f"{inside}/bin/python", "-m", "pip", "install", "--no-input", "-r", f"{inside}/requirements.txt"],
                tmp, base, timeout,
            )
            if code != 0:
                raise EnvError(f"pip install -r requirements.txt failed:\n{_tail(out)}")
            write_new(tmp / ".ready", (version + "\n").encode(), 0o644)  # pip ran the model's code before
            try:
                os.replace(tmp, final)
            except OSError:
                # Another process finished first: use theirs.
                if not (final / ".ready").exists():
                    raise
        except subprocess.TimeoutExpired:
            raise EnvError(f"building the environment took longer than {int(timeout)} s") from None
        except StepFailed as exc:
            raise EnvError(f"stopped while building the environment: {exc}") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return Interpreter(_venv_python(final, version), version, final, base)


class Unconfined:
    """Builds with plain processes as the server's user: for servers whose runs are not confined."""

    def __init__(self, log: Optional[Callable[[str], None]] = None, stop: Optional[threading.Event] = None,
                 env_extra: Optional[dict[str, str]] = None) -> None:
        self.log = log
        self.stop = stop
        self.env_extra = env_extra or {}

    def env_path(self, build_dir: Path) -> str:
        return str(build_dir)

    def run(self, argv: list[str], build_dir: Path, base: Path, timeout: float) -> tuple[int, str]:
        if self.log:
            self.log("$ " + " ".join(argv) + "\n")
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1",
               "PIP_NO_INPUT": "1", **self.env_extra}
        env.pop("PYTHONPATH", None)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        lines: list[str] = []

        def pump() -> None:
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                lines.append(line)
                if len(lines) > 2000:
                    del lines[:1000]
                if self.log:
                    self.log(line)
            proc.stdout.close()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if self.stop is not None and self.stop.is_set():
                _kill_group(proc)
                raise StepFailed("stopped")
            if time.monotonic() > deadline:
                _kill_group(proc)
                raise subprocess.TimeoutExpired(argv, timeout)
        reader.join(10)
        return code, "".join(lines)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


_pip_settings: Optional[tuple[dict[str, str], tuple[Path, ...]]] = None


def pip_settings() -> tuple[dict[str, str], tuple[Path, ...]]:
    """This machine's pip settings (its config files and PIP_* variables) as PIP_* variables,
    and the local folders and files they name (find-links, file:// indexes, certificates,
    constraints): what a sandboxed pip needs to install as the server's own pip would."""
    global _pip_settings
    if _pip_settings is None:
        try:
            out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                                 text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        env: dict[str, str] = {}
        paths: set[Path] = set()
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if not sep or "." not in key:
                continue
            name = key.split(".", 1)[1].strip()
            value = value.strip().strip("'\"")
            env["PIP_" + name.upper().replace("-", "_")] = value
            for word in value.split():
                local = Path(word[len("file://"):] if word.startswith("file://") else word)
                if local.is_absolute() and local.exists():
                    paths.add(local)
        env.update({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PYTHONNOUSERSITE": "1"})
        _pip_settings = env, tuple(sorted(paths))
    return _pip_settings


def select_python(
    python_version: Optional[str],
    requirements_file: Optional[Path],
    envs_dir: Optional[Path] = None,
    builder: Optional[Builder] = None,
) -> Interpreter:
    """The interpreter for a run: the server's own when it fits, else a cached venv (made by ``builder``)."""
    version = normalize_version(python_version)
    text = ""
    if requirements_file is not None and Path(requirements_file).is_file():
        text = Path(requirements_file).read_text(encoding="utf-8", errors="replace")
    if version == SERVER_VERSION and satisfied_here(text):
        return Interpreter(Path(sys.executable), version, None)
    if envs_dir is None:
        raise EnvError("no envs directory given to build a venv in")
    return build_env(Path(envs_dir), version, text, builder or Unconfined())
