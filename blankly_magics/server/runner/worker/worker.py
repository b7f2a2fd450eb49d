"""A warm worker: a process in a run's sandbox that imports the heavy modules before its run is
known, then becomes that run's model, or forks one process per point of a sweep.

    python /blankly/worker/worker.py FD MODULE,MODULE,...

FD is a SOCK_SEQPACKET socket to the server: every message is one JSON object in one packet.
Once its imports are done the worker says ``{"ready": PID, "skipped": [...]}`` (a module the
environment does not have is skipped), or ``{"broken": TEXT}`` when one of the first three
(numpy, pandas, blankly) fails to import, and exits. Then the server sends a job,
``{"argv": [python, script], "cwd", "env", "rlimits", "key"}``, with the run's output pipe
attached (SCM_RIGHTS), and the worker takes the job itself and exits with it. Or the server
sends ``{"fork": true}`` first: then every job that follows runs in a child forked for it, the
worker answering ``{"started": KEY, "pid": PID}`` and ``{"exited": KEY, "code": CODE}``, until
the socket closes (the kernel limits it carries apply to the worker and every point).

Taking a job: the pipe becomes stdout and stderr, the job's kernel limits are set, the
environment is replaced by the run's, then the working directory, ``sys.argv``,
``sys.path[0]`` and a fresh ``__main__`` module are the script's, as ``python script`` makes
them; the exit code, a traceback (from the script's own frame on), ``SystemExit`` and atexit
are the interpreter's own. What the imports printed is held in a file until then and written
first into the job's output, where a cold run would have printed it.

It runs in the model's interpreter (any Python >= 3.7), so it uses the standard library only.
"""
import array
import gc
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
import types

BASE_MODULES = ("numpy", "pandas", "blankly")  # a failure here means this environment is not warmable
MAX_MESSAGE = 1 << 20


def send(ctl, message):
    ctl.send(json.dumps(message).encode("utf-8"))


def receive(ctl):
    """(message, [fds]); (None, []) once the server closed its end."""
    fds = array.array("i")
    data, ancillary, _flags, _addr = ctl.recvmsg(MAX_MESSAGE, socket.CMSG_LEN(4 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data.decode("utf-8")), list(fds)


def preimport(names):
    """Import ``names``; the ones this environment lacks are returned. A base module that fails
    otherwise raises; another module that fails is dropped with what it left in sys.modules."""
    skipped = []
    for name in names:
        before = set(sys.modules)
        try:
            importlib.import_module(name)
        except Exception as exc:
            missing = isinstance(exc, ModuleNotFoundError) and exc.name == name.split(".")[0]
            if name in BASE_MODULES and not missing:
                raise
            for leftover in set(sys.modules) - before:
                sys.modules.pop(leftover, None)
            skipped.append(name)
    return skipped


def hold_output():
    """Send stdout and stderr into a nameless file until a job comes (see take())."""
    import tempfile

    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        return os.dup(held.fileno())


def take(job, out_fd, held):
    """Become the job's process (see the module's docstring); returns the script's path."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    data = os.pread(held, os.fstat(held).st_size, 0)  # by offset: forked points share the file
    os.close(held)
    while data:
        data = data[os.write(1, data):]
    for name, value in job.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    os.environ.clear()
    os.environ.update(job["env"])
    os.chdir(job["cwd"])
    script = job["argv"][1]
    sys.argv = list(job["argv"][1:])
    if hasattr(sys, "orig_argv"):
        sys.orig_argv = list(job["argv"])
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    return script


def exit_code(exc):
    """What the interpreter makes of an uncaught SystemExit (printing a non-number's text)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write("%s\n" % (code,))
    return 1


def run_script(script):
    """Run ``script`` as ``__main__``; its exit code."""
    import builtins
    from importlib.machinery import SourceFileLoader

    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=script, __builtins__=builtins, __cached__=None, __package__=None,
                         __spec__=None, __loader__=SourceFileLoader("__main__", script))
    sys.modules["__main__"] = main
    try:
        with open(script, "rb") as fh:
            source = fh.read()
        exec(compile(source, script, "exec", dont_inherit=True), main.__dict__)
    except SystemExit as exc:
        return exit_code(exc)
    except BaseException as exc:  # noqa: B902 - shown as the interpreter shows an uncaught exception
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next  # the traceback starts in the script, as it does for `python script`
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def leave(code):
    """End a forked point without the interpreter's teardown, which in a child of the worker would
    write to nearly every page it shares with it (a copy each, about 70 ms). In the order the
    interpreter ends: its threads are waited for, atexit runs, then what the script made goes
    (its files are flushed and closed, ``__del__`` runs); the modules it shares stay as they are."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.modules["__main__"].__dict__.clear()
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code & 0xFF)


def exit_status(status):
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def serve_forks(ctl):
    """Fork a child per job until the server closes the socket; returns only in a child, its job."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    running = {}
    while True:
        readable = select.select([ctl, wake_r], [], [])[0]
        if wake_r in readable:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            while running:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                send(ctl, {"exited": running.pop(pid), "code": exit_status(status)})
        if ctl not in readable:
            continue
        job, fds = receive(ctl)
        if job is None:
            for pid in running:
                os.kill(pid, signal.SIGKILL)
            os._exit(0)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # the kernel's limit on processes: this point fails, the others go on
            os.write(fds[0], ("[blankly_magics] this point could not start: %s\n" % exc).encode())
            os.close(fds[0])
            send(ctl, {"started": job["key"], "pid": None})
            send(ctl, {"exited": job["key"], "code": 1})
            continue
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (wake_r, wake_w):
                os.close(fd)
            ctl.close()
            numpy_random = sys.modules.get("numpy.random")
            if numpy_random is not None:
                numpy_random.seed()  # its global state is fresh in every run, as in a new process
            return job, fds[0]
        os.close(fds[0])
        running[pid] = job["key"]
        send(ctl, {"started": job["key"], "pid": pid})


def main():
    ctl = socket.socket(fileno=int(sys.argv[1]))
    modules = [name for name in sys.argv[2].split(",") if name] if len(sys.argv) > 2 else []
    held = hold_output()
    try:
        skipped = preimport(modules)
    except BaseException as exc:  # noqa: B902 - any failure: this environment runs cold
        send(ctl, {"broken": "%s: %s" % (type(exc).__name__, exc)})
        return 1
    # What the imports made lives as long as the process: the collector leaves it alone, so the
    # run's exit (and each fork) does not walk it (a second of shutdown after a Blankly import).
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    send(ctl, {"ready": os.getpid(), "skipped": skipped})
    job, fds = receive(ctl)
    if job is None:
        return 0
    if job.get("fork"):
        for name, value in job.get("rlimits", {}).items():  # for the worker and every point it forks
            resource.setrlimit(getattr(resource, name), (value, value))
        job, out_fd = serve_forks(ctl)
        leave(run_script(take(job, out_fd, held)))
    ctl.close()
    return run_script(take(job, fds[0], held))


if __name__ == "__main__":
    sys.exit(main())
