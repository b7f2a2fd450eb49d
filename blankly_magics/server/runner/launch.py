"""The first step of every process a run starts; runs as the server's user, then becomes the run.

    python -I -S launch.py SPEC_JSON

SPEC_JSON: ``{"argv": [...], "rlimits": {"RLIMIT_FSIZE": n, ...}, "nice": 10, "umask": 63,
"stage": "/mnt" | null, "sources": [...], "uid": n | null, "gid": n | null, "parent": pid | null}``.

It sets the run's kernel limits (largest file, processes, no core dumps), its
priority and umask, and then executes ``argv`` (bubblewrap, or the model's
Python when runs are not confined). Under a server running as root it first
gives the run a user id of its own, so that the sandboxed process is an
unprivileged user of the machine (its process limit is then the kernel's, per
user), not root in disguise. bubblewrap, started by that user, could not reach
the folders it must show (the data dir and a pyenv under /root are closed to
others), so this step, still root, opens each ``sources`` path in a private
mount namespace of its own and binds it at ``stage/N``, then drops to the run's
user and executes bubblewrap, whose command line names ``stage/N``. The host's
mounts are untouched: the namespace ends with the run.

This file is executed by path with ``-I -S`` (no site, no user paths), imports
the standard library only and nothing after dropping to the run's user, which
may not read the interpreter's own files any more.
"""
import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def stage(directory, sources):
    """Bind every source at directory/N inside a private mount namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    # Opened before the tmpfs covers `directory`: a source may lie beneath it.
    fds = [os.open(path, os.O_PATH | os.O_CLOEXEC) for path in sources]
    _check(libc.mount(b"tmpfs", directory.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m"),
           "mounting the staging tmpfs")
    for i, fd in enumerate(fds):
        target = os.path.join(directory, str(i))
        if os.path.isdir("/proc/self/fd/%d" % fd):
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
        _check(libc.mount(("/proc/self/fd/%d" % fd).encode(), target.encode(), None, MS_BIND | MS_REC, None),
               "binding %s" % sources[i])
        os.close(fd)


def main(spec):
    if spec.get("stage"):
        stage(spec["stage"], spec["sources"])
    for name, value in spec.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    os.nice(spec.get("nice", 0))
    os.umask(spec.get("umask", 0o077))
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    if spec.get("parent"):
        # Die with the server from here on (a change of user clears this, so it comes after), and
        # not start at all if it died already: bubblewrap's own --die-with-parent comes later.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != spec["parent"]:
            os._exit(1)
    argv = spec["argv"]
    os.execv(argv[0], argv)


if __name__ == "__main__":
    try:
        main(json.loads(sys.argv[1]))
    except OSError as exc:
        sys.stderr.write("[blankly_magics] cannot start the run's process: %s\n" % (exc,))
        sys.exit(126)
