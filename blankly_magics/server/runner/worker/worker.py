"""A warm worker: a process in a run's sandbox that imports the heavy modules before its run is
known, then becomes that run's model, or forks one process per point of a sweep.

    python /blankly/worker/worker.py FD MODULE,MODULE,...

FD is a SOCK_SEQPACKET socket to the server: every message is one JSON object in one packet.
Once its imports are done the worker says ``{"ready": PID, "skipped": [...]}`` (a module the
environment does not have is skipped), or ``{"broken": TEXT}`` when one of the first three
(numpy, pandas, blankly) fails to import, and exits. Then the server sends a job,
``{"argv": [python, script], "cwd", "env", "rlimits", "key"}``, with the run's output pipe
attached (SCM_RIGHTS), and the worker takes the job itself and exits with it. Or the server
sends ``{"fork": true}`` first (a sweep's points): then every job that follows names a lane
(``"lane": N``) and runs in that lane's process, forked from the worker for the lane's first
job; the worker answers ``{"started": KEY, "pid": PID}`` and ``{"exited": KEY, "code": CODE}``
for each job, until the socket closes (the kernel limits it carries apply to the worker and
every lane). A lane runs its jobs one after another, each as a fresh ``python script`` would
see it (see ``next_point``), and ends after LANE_POINTS jobs, or after a job that failed or
left threads or processes running; the server sends a lane's next job only once its last one
is reported.

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
import threading
import types

BASE_MODULES = ("numpy", "pandas", "blankly")  # a failure here means this environment is not warmable
MAX_MESSAGE = 1 << 20
# Jobs one lane's process runs before a fresh fork replaces it: a fork costs about as much as a short
# backtest (its copied pages, its exit), and the bound keeps what jobs leave in shared modules short-lived.
LANE_POINTS = 16


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


def forward(sock, job, fd):
    """Hand a job and its output pipe on to a lane."""
    sock.sendmsg([json.dumps(job).encode("utf-8")], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


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


def take(job, out_fd, held, keep_held=False):
    """Become the job's process (see the module's docstring); returns the script's path."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    data = os.pread(held, os.fstat(held).st_size, 0)  # by offset: lanes share the file
    if not keep_held:
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


def settle():
    """What the interpreter does as a script ends, short of exiting: its threads are waited for,
    atexit runs, then what the script made goes (its files are flushed and closed, ``__del__``
    runs); the modules the worker imported stay as they are."""
    import atexit

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.modules["__main__"].__dict__.clear()
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()


def exit_status(status):
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class Lane:
    """A lane's process as the worker sees it: its pid, its socket, the key of the job it runs."""

    def __init__(self, pid, sock):
        self.pid = pid
        self.sock = sock
        self.key = None  # None between jobs


class Lanes:
    """The worker's side of fork mode: a process per lane, the jobs handed on, their ends relayed."""

    def __init__(self, ctl):
        self.ctl = ctl
        self.lanes = {}  # lane number -> Lane
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def serve(self):
        """Until the server closes the socket; returns only in a new lane's process: (job, fd, socket)."""
        while True:
            socks = [lane.sock for lane in self.lanes.values()]
            readable = select.select([self.ctl, self.wake_r] + socks, [], [])[0]
            for number in [n for n, lane in self.lanes.items() if lane.sock in readable]:
                self._drain(number)
            if self.wake_r in readable:
                self._reap()
            if self.ctl in readable:
                job, fds = receive(self.ctl)
                if job is None:
                    for lane in self.lanes.values():
                        os.kill(lane.pid, signal.SIGKILL)
                    os._exit(0)
                mine = self._give(job, fds[0])
                if mine is not None:
                    return mine

    def _give(self, job, fd):
        lane = self.lanes.get(job["lane"])
        if lane is not None:
            try:
                forward(lane.sock, job, fd)
            except OSError:  # the lane is ending: a fresh one takes the job
                self._drop(job["lane"])
                lane = None
            else:
                os.close(fd)
        if lane is None:
            sys.stdout.flush()
            sys.stderr.flush()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                pid = os.fork()
            except OSError as exc:  # the kernel's limit on processes: this job fails, the others go on
                os.write(fd, ("[blankly_magics] this point could not start: %s\n" % exc).encode())
                os.close(fd)
                ours.close()
                theirs.close()
                send(self.ctl, {"started": job["key"], "pid": None})
                send(self.ctl, {"exited": job["key"], "code": 1})
                return None
            if pid == 0:
                self._become_lane(ours)
                return job, fd, theirs
            theirs.close()
            os.close(fd)
            lane = self.lanes[job["lane"]] = Lane(pid, ours)
        lane.key = job["key"]
        send(self.ctl, {"started": job["key"], "pid": lane.pid})
        return None

    def _become_lane(self, ours):
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        ours.close()
        for lane in self.lanes.values():  # another lane's socket would keep it open
            lane.sock.close()
        self.ctl.close()

    def _drain(self, number):
        """Relay what a lane said (a job ended: it says so before it takes the next, or ends)."""
        lane = self.lanes[number]
        while True:
            try:
                data = lane.sock.recv(MAX_MESSAGE, socket.MSG_DONTWAIT)
            except OSError:  # nothing more now, or the lane is gone
                return
            if not data:
                return
            message = json.loads(data.decode("utf-8"))
            lane.key = None
            last = message.pop("last", False)
            send(self.ctl, message)
            if last:  # it ends: its next job goes to a fresh fork
                self._drop(number)
                return

    def _reap(self):
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            number = next((n for n, lane in self.lanes.items() if lane.pid == pid), None)
            if number is None:  # a lane that said it ends, or ended before it ran anything
                continue
            self._drain(number)  # what it said before it ended comes first
            lane = self.lanes.get(number)
            if lane is not None and lane.key is not None:
                send(self.ctl, {"exited": lane.key, "code": exit_status(status)})
            self._drop(number)

    def _drop(self, number):
        lane = self.lanes.pop(number, None)
        if lane is not None:
            lane.sock.close()


def next_point(baseline, root):
    """Between two jobs of one lane: what the last one changed that a fresh process would not have
    is put back (sys.path, the excepthook, the output objects, the modules of its model's folder
    ``root``, ``random`` and numpy's seeds, the platform hook's reporter)."""
    path, excepthook, known = baseline
    inside = os.path.join(os.path.realpath(root), "")
    for name in [name for name in sys.modules if name not in known]:
        origin = getattr(sys.modules.get(name), "__file__", None) or ""
        if os.path.realpath(origin).startswith(inside):  # the model's own modules are imported afresh
            del sys.modules[name]
    sys.path[:] = path
    sys.excepthook = excepthook
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    fresh_seeds()
    hook = sys.modules.get("blankly_external")
    reset = getattr(hook, "next_run", None)
    if callable(reset):
        reset()


def fresh_seeds():
    """Seeded afresh in every job, as a new process is."""
    import random

    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def has_children():
    pid = os.getpid()
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as fh:
            return bool(fh.read().strip())
    except OSError:
        return True  # cannot tell: as if it had


def run_lane(job, out_fd, sock, held):
    """A lane's process: its jobs one after another (see the module's docstring); never returns."""
    fresh_seeds()
    baseline = (list(sys.path), sys.excepthook, set(sys.modules))
    done = 0
    while True:
        code = run_script(take(job, out_fd, held, keep_held=True))
        settle()
        done += 1
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the job's output ends here: its log is complete once it is reported
        os.dup2(devnull, 2)
        os.close(devnull)
        # A job that failed, or left threads or processes running, ends its lane: the next starts
        # from a clean fork.
        last = code != 0 or done >= LANE_POINTS or threading.active_count() > 1 or has_children()
        try:
            send(sock, {"exited": job["key"], "code": code & 0xFF, "last": last})
            if last:
                raise OSError
            previous = job
            job, fds = receive(sock)
        except OSError:
            os._exit(code & 0xFF)
        if job is None:
            os._exit(0)
        next_point(baseline, previous.get("root") or os.path.dirname(previous["argv"][1]))
        out_fd = fds[0]


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
        for name, value in job.get("rlimits", {}).items():  # for the worker and every lane it forks
            resource.setrlimit(getattr(resource, name), (value, value))
        run_lane(*Lanes(ctl).serve(), held)
    ctl.close()
    return run_script(take(job, fds[0], held))


if __name__ == "__main__":
    sys.exit(main())
