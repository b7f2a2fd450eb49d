"""The sandbox a run's processes start in, as a bubblewrap (``bwrap``) command line.

What a process of a run sees; nothing else of the machine exists inside::

    /usr /bin /sbin /lib*        the system, read-only (symlinks stay symlinks, as on the host)
    /etc/...                     only name resolution, certificates, time zone, the dynamic
                                 linker's cache and pip's site config, read-only
    /etc/passwd /etc/group       one account, ``blankly`` (uid and gid 1000), home /blankly/home
    <interpreter prefixes>       the Python the run uses, at its own path, read-only (a pyenv
                                 version's folder, never the HOME above it); with the server's
                                 own Python, the blankly_magics package too where an editable
                                 install keeps it outside them
    /blankly/env                 the model's virtual environment, read-only (writable only to the
                                 sandboxed pip that builds it)
    /blankly/hook                the blankly_external hook, read-only
    /blankly/worker              the warm worker's program, read-only (warm runs and sweeps)
    /blankly/model               the run's copy of its version, the working directory (writable)
    /blankly/report              where the hook writes the run's results (writable)
    /blankly/home                HOME, empty at start (writable)
    /tmp                         the run's own (writable)
    /proc                        of the run's own PID namespace: only the run's processes
    /dev                         null, zero, full, random, urandom, tty, pts (read-only);
                                 /dev/shm is the run's /tmp again

The writable folders are the run's folder (folders.RunFolder) on the server's
disk, so what a run writes anywhere counts against its disk allowance and goes
when the run's files are removed. Nothing else is writable: the sandbox's own
root and /dev (bubblewrap's tmpfs, memory no limit would see) are remounted
read-only once built. The process runs as uid 1000 in a user
namespace of its own with no capabilities (``--cap-drop ALL``), no new
privileges (bubblewrap sets ``PR_SET_NO_NEW_PRIVS``), no further user
namespaces (``--disable-userns``), its own PID, IPC, UTS and (where the kernel
allows) cgroup namespaces, a new session (no terminal to inject into), and dies
with the server (``--die-with-parent``). ``network=False`` adds a network
namespace of its own with loopback only.

``SandboxSpec`` is one process start: which folders, which interpreter, which
command. Turning it into ``bwrap`` arguments is all this module does; starting
the process is process.py's and launch.py's.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

SANDBOX_UID = 1000
SANDBOX_USER = "blankly"
ROOT = "/blankly"


@dataclass(frozen=True)
class View:
    """Where a run's folders are, as its process sees them."""

    model: str
    report: str
    home: str
    tmp: str
    hook: str
    env: str


# Fixed paths: any run's process sees the same ones, so a sandbox can be made before its run is known.
SANDBOX_VIEW = View(f"{ROOT}/model", f"{ROOT}/report", f"{ROOT}/home", "/tmp", f"{ROOT}/hook", f"{ROOT}/env")
HOOK_DIR = Path(__file__).resolve().parent / "hook"
WORKER_DIR = Path(__file__).resolve().parent / "worker"
WORKER = f"{ROOT}/worker/worker.py"  # the warm worker's program, as a sandbox sees it

# /etc entries a Python program needs to resolve names, verify TLS, tell the time and find its
# libraries; pip's site config too (for environment builds). Missing ones are skipped.
ETC_ALLOWED = (
    "resolv.conf", "hosts", "host.conf", "nsswitch.conf", "gai.conf", "services", "protocols",
    "localtime", "timezone", "ssl", "ca-certificates", "ca-certificates.conf", "pki", "crypto-policies",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "mime.types", "pip.conf", "xdg/pip",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxError(RuntimeError):
    """A sandbox cannot be built as asked; the message says why."""


@dataclass(frozen=True)
class Mount:
    """One host path shown inside the sandbox."""

    source: Path
    dest: str
    writable: bool = False


@dataclass(frozen=True)
class SandboxSpec:
    """One process start inside a sandbox: what is mounted where, and what runs.

    ``folders`` maps the run's writable folders (``model``, ``report``, ``home``,
    ``tmp``; for an environment build also ``env``) to their host paths; ``argv`` and ``cwd``
    are as seen inside. ``worker`` shows the warm worker's program."""

    folders: dict[str, Path]
    argv: tuple[str, ...]
    cwd: str
    prefixes: tuple[Path, ...] = ()  # interpreter prefixes, read-only at their own paths
    env_dir: Optional[Path] = None  # the model's venv, read-only at /blankly/env
    extra: tuple[Mount, ...] = ()  # anything else read-only (pip's local package folders)
    network: bool = True
    account_files: Optional[tuple[Path, Path]] = None  # passwd, group
    worker: bool = False

    def mounts(self) -> list[Mount]:
        """Every bind, in the order bwrap must make them (parents before children)."""
        view = SANDBOX_VIEW
        out = [Mount(Path(p), p) for p in SYSTEM_DIRS if os.path.isdir(p) and not os.path.islink(p)]
        for name in ETC_ALLOWED:
            path = Path("/etc") / name
            if path.exists():
                out.append(Mount(path, str(path)))
        if self.account_files is not None:
            out += [Mount(self.account_files[0], "/etc/passwd"), Mount(self.account_files[1], "/etc/group")]
        out.append(Mount(HOOK_DIR, view.hook))
        if self.worker:
            out.append(Mount(WORKER_DIR, posixpath.dirname(WORKER)))
        if self.env_dir is not None:
            out.append(Mount(self.env_dir, view.env))
        for name, path in self.folders.items():
            out.append(Mount(path, getattr(view, name), writable=True))
        if "tmp" in self.folders:  # POSIX shared memory lands on disk, in the run's /tmp, counted
            out.append(Mount(self.folders["tmp"], "/dev/shm", writable=True))
        # Last, so that a Python living under /tmp (a venv made there) is not hidden by the run's /tmp.
        out += [Mount(p, str(p)) for p in self.prefixes if not _covered(p)]
        out += [m for m in self.extra if not _covered(m.source)]
        return out


def _covered(path: Path) -> bool:
    """True when a system folder already shows ``path`` (a Python under /usr needs no bind of its own)."""
    return any(Path(path).is_relative_to(d) for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d))


def bwrap_command(spec: SandboxSpec, bwrap: str, source: Callable[[int, Mount], str] = lambda i, m: str(m.source)
                  ) -> list[str]:
    """The full ``bwrap ... -- argv`` command line. ``source`` names mount ``i``'s host path
    as bwrap will find it (the launcher of a root server stages every source first)."""
    cmd = [
        bwrap,
        "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--disable-userns",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", SANDBOX_USER,
        "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
    ]
    if not spec.network:
        cmd.append("--unshare-net")
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):
            cmd += ["--symlink", os.readlink(directory), directory]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    for i, mount in enumerate(spec.mounts()):
        cmd += ["--bind" if mount.writable else "--ro-bind", source(i, mount), mount.dest]
    # The sandbox's own root and /dev are tmpfs, in memory no limit sees: read-only once built.
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", spec.cwd, "--", *spec.argv]
    return cmd


def find_bwrap() -> Optional[str]:
    """bubblewrap as found on PATH (None when this machine has none)."""
    return shutil.which("bwrap")


def account_files(folder: Path) -> tuple[Path, Path]:
    """The sandbox's /etc/passwd and /etc/group, written once into ``folder`` (readable by any run)."""
    from ...files import atomic_write, private_dir

    private_dir(folder)
    passwd = (f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}:Blankly model:{SANDBOX_VIEW.home}:/bin/sh\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    group = f"{SANDBOX_USER}:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"
    paths = (folder / "passwd", folder / "group")
    for path, text in zip(paths, (passwd, group)):
        try:
            current = path.read_text()
        except OSError:
            current = None
        if current != text:
            atomic_write(path, text, mode=0o644, fsync=False)
    return paths


def check_prefix(prefix: Path, data_dir: Path) -> Path:
    """Refuse to show a run an interpreter prefix that holds the server's data or a whole HOME."""
    prefix = Path(prefix).resolve()
    for what, path in (("the server's data dir", Path(data_dir).resolve()), ("the HOME folder", Path.home().resolve())):
        if path == prefix or path.is_relative_to(prefix):
            raise SandboxError(
                f"the Python at {prefix} holds {what} ({path}); a run cannot be given that interpreter: "
                "install Python elsewhere (pyenv's versions folder, /usr, /opt)"
            )
    return prefix


_prefix_cache: dict[str, tuple[Path, ...]] = {}


def interpreter_prefixes(python: Path) -> tuple[Path, ...]:
    """The folders an interpreter needs (its prefix and, for a venv, its base), asked of it once."""
    key = str(python)
    if key not in _prefix_cache:
        if Path(python) == Path(sys.executable):
            found = {Path(sys.prefix), Path(sys.base_prefix)}
            # A model may import blankly_magics (its ReplayExchange) from the server's own environment:
            # an editable install keeps the package outside the prefixes, so it is shown on its own.
            package = Path(__file__).resolve().parents[2]
            if not any(package.is_relative_to(p.resolve()) for p in found):
                found.add(package)
        else:
            import subprocess

            out = subprocess.run(
                [str(python), "-I", "-S", "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout.split("\n")
            found = {Path(line) for line in out if line.strip()}
        _prefix_cache[key] = tuple(sorted(p.resolve() for p in found))
    return _prefix_cache[key]
