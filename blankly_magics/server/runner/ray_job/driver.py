"""A run on a Ray cluster, as the job's entrypoint runs it there (``python _blankly/driver.py``).

The server's RayExecutor submits a job whose working directory holds::

    model/            the version's files
    _blankly/driver.py, _blankly/launch.py, _blankly/hook/blankly_external.py
    _blankly/points.json   a sweep's points (points mode only)
    _blankly/ticket.json   where to fetch the run's secret files, once (runs that have some)

and one variable, ``BLANKLY_MAGICS_RUN`` (JSON: the mode, the main script, its
folder, the platform's variables, the plan's limits, the frame marker). Each run
gets a private folder of its own on the node it lands on (``model`` and the hook
as the driver read them from the working directory, a sweep's points through
Ray's object store; ``report``, ``home``, ``tmp``: 0700, removed at the end,
secret files with it), and the model starts there as ``python bot.py`` with an
environment built from an allowlist, the hook first on its PYTHONPATH, exactly as
the local executor starts it, through the same launcher (launch.py: the largest
file, no core dumps, its priority, death with its parent). This driver watches the
plan's limits (time, and with psutil memory, processes and disk) and kills the
model's process group past one.

What goes back to the server travels in the job's log only, as frame lines the
model's own output cannot be mistaken for: ``<marker>{json}`` where the marker is
``\\x1eblankly_magics:<nonce>:`` (a nonce per job). Frames: ``begin`` (this driver
is up), ``data`` (a chunk of a point's log or of a report file, zlib + base64),
``start`` / ``end`` (a point's, or the run's: exit code, the limit that stopped
it, an error). In run mode the model's output goes straight to the job's log; in
points mode every point is a Ray task (``SPREAD`` over the nodes, at most
``parallel`` at once) whose output comes back with its result and is framed here.

Standard library only (psutil and ray when present), any Python >= 3.9: this file
runs in the cluster's environment, never imports blankly_magics.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
WORKDIR = os.path.dirname(HERE)  # the job's working directory on the driver's node
POLL = 0.25
DISK_POLL = 2.0
CHUNK = 48 * 1024  # bytes of compressed data per frame
LOG_KEEP = 2 << 20  # a point's output kept: its first and last LOG_KEEP bytes
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

_out_lock = threading.Lock()


def frame(marker, **data):
    """One frame line on stdout (the job's log), whole, after whatever the model printed."""
    line = marker + json.dumps(data, separators=(",", ":")) + "\n"
    with _out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def pack(data):
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def send_data(marker, index, kind, data):
    """``data`` (bytes) as chunked frames; the server joins and unpacks them by (index, kind)."""
    packed = pack(data)
    for start in range(0, max(len(packed), 1), CHUNK):
        frame(marker, t="data", i=index, kind=kind, b=packed[start:start + CHUNK])


# ---------------------------------------------------------------- one run's folder and process

def read_files(workdir):
    """What a run's folder is made of, read from the job's working directory at once: ``model/``,
    the hook and the launcher, as {path: (data, executable)}. Held in memory because on a cluster
    whose nodes share a disk, another node setting up the same working directory replaces it
    while this job runs (Ray's eager install at ``ray.init``)."""
    files = {}
    sources = [("model", "model"), (os.path.join("_blankly", "hook"), "hook")]
    for source, target in sources:
        top = os.path.join(workdir, source)
        for folder, _dirs, names in os.walk(top):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as fh:
                        files[os.path.join(target, os.path.relpath(path, top))] = \
                            (fh.read(), os.stat(path).st_mode & 0o100)
    with open(os.path.join(workdir, "_blankly", "launch.py"), "rb") as fh:
        files["launch.py"] = (fh.read(), 0)
    return files


class RunDir:
    """A run's private folder on this node: model, hook and launcher (written from ``files``),
    report, home, tmp."""

    def __init__(self, config, files):
        self.root = tempfile.mkdtemp(prefix="blankly-run-")
        os.chmod(self.root, 0o700)
        for name, (data, executable) in files.items():
            path = os.path.join(self.root, name)
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o700 if executable else 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        self.model = os.path.join(self.root, "model")
        os.makedirs(self.model, 0o700, exist_ok=True)
        self.hook = os.path.join(self.root, "hook")
        self.launcher = os.path.join(self.root, "launch.py")
        self.report = os.path.join(self.root, "report")
        self.home = os.path.join(self.root, "home")
        self.tmp = os.path.join(self.root, "tmp")
        for folder in (self.report, self.home, self.tmp):
            os.mkdir(folder, 0o700)
        self.cwd = os.path.normpath(os.path.join(self.model, config["cwd"]))
        if not os.path.realpath(self.cwd).startswith(os.path.realpath(self.model) + os.sep) \
                and os.path.realpath(self.cwd) != os.path.realpath(self.model):
            raise RuntimeError("the model's working directory leads out of its folder")

    def place_secrets(self, files):
        for name, data in files.items():
            if not name or set(name) - NAME_CHARS or name.startswith("."):
                raise RuntimeError("a secret file name must be a plain file name")
            path = os.path.join(self.cwd, name)
            if os.path.lexists(path) and not os.path.isdir(path):
                os.unlink(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def reports(self):
        out = {}
        for name in sorted(os.listdir(self.report)):
            path = os.path.join(self.report, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) <= 64 << 20:
                with open(path, "rb") as fh:
                    out[name] = fh.read()
        return out

    def disk_use(self):
        total = 0
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                try:
                    info = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                total += max(getattr(info, "st_blocks", 0) * 512, 0) or info.st_size
        return total

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


def environment(run_dir, config, platform_env):
    """The model's whole environment: an allowlist (the server's: the locale's names, the system
    PATH), never this job's own (no Ray variables)."""
    env = {name: os.environ[name] for name in config["locale"] if name in os.environ}
    env.update(platform_env)
    python_bin = os.path.dirname(sys.executable)
    env.update({
        "PATH": python_bin + ":" + config["path"],
        "HOME": run_dir.home,
        "TMPDIR": run_dir.tmp,
        "USER": "blankly",
        "LOGNAME": "blankly",
        "PYTHONPATH": run_dir.hook,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        "BROWSER": "true",
        "BLANKLY_MAGICS_REPORT_DIR": run_dir.report,
    })
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    return env


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tree_usage(pid):
    """(resident bytes, processes) of a process and its descendants; (0, 0) without psutil."""
    try:
        import psutil
    except ImportError:
        return 0, 0
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0, 0
    rss = 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
        except psutil.Error:
            pass
    return rss, len(procs)


def watch(proc, run_dir, limits):
    """Wait for the model's process, enforcing the plan; the limit that stopped it, or None."""
    timeout = limits.get("timeout")
    ends = time.monotonic() + timeout if timeout else None
    next_disk = 0.0
    while proc.poll() is None:
        now = time.monotonic()
        limit = None
        if ends is not None and now > ends:
            limit = "time"
        else:
            rss, count = tree_usage(proc.pid)
            if limits.get("ram") and rss > limits["ram"] << 20:
                limit = "ram"
            elif limits.get("processes") and count > limits["processes"]:
                limit = "processes"
            elif limits.get("disk") and now >= next_disk:
                started = time.monotonic()
                used = run_dir.disk_use()
                next_disk = now + min(DISK_POLL, max(POLL, 10 * (time.monotonic() - started)))
                if used > limits["disk"] << 20:
                    limit = "disk"
        if limit is not None:
            if limit == "time":
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(2)
                except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                    pass
            kill_group(proc)
            proc.wait()
            return limit
        try:
            proc.wait(POLL)
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc)  # whatever the model left behind in its group
    if limits.get("disk") and proc.returncode == -signal.SIGXFSZ:
        return "disk"
    return None


def start_model(run_dir, config, platform_env, stdout):
    """The model's process, in a session of its own, started through the launcher."""
    limits = config["limits"]
    rlimits = {"RLIMIT_CORE": 0}
    if limits.get("disk"):
        rlimits["RLIMIT_FSIZE"] = limits["disk"] << 20
    spec = {"rlimits": rlimits, "nice": config.get("nice", 0), "umask": 0o077, "parent": os.getpid(),
            "argv": [sys.executable, os.path.join(run_dir.model, config["main"])]}
    return subprocess.Popen([sys.executable, "-I", "-S", run_dir.launcher, json.dumps(spec)], cwd=run_dir.cwd,
                            env=environment(run_dir, config, platform_env), stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)


# ---------------------------------------------------------------- secrets

def fetch_secrets():
    """The run's secret files, fetched once from the server with the ticket the job carries."""
    path = os.path.join(HERE, "ticket.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        ticket = json.load(fh)
    request = urllib.request.Request(ticket["url"], data=json.dumps({"ticket": ticket["ticket"]}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            files = json.loads(answer.read().decode("utf-8"))["files"]
    except Exception as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RuntimeError("the run's secret files could not be fetched from the server at %s (%s)"
                           % (ticket["url"], reason)) from None
    return {name: base64.b64decode(data) for name, data in files.items()}


def failure(exc):
    """A run that could not start, in words: ours as they are, anything else with its type."""
    if type(exc) is RuntimeError:
        return str(exc)
    return "the run could not start on its Ray node: %s: %s" % (type(exc).__name__, exc)


# ---------------------------------------------------------------- run mode

def run_one(config):
    marker = config["frame"]
    frame(marker, t="begin", python="%d.%d" % sys.version_info[:2], pid=os.getpid())
    run_dir = None
    proc = None

    def on_term(signum, _frame):
        if proc is not None:
            kill_group(proc)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        run_dir = RunDir(config, read_files(WORKDIR))
        run_dir.place_secrets(fetch_secrets())
        started = time.time()
        sys.stdout.flush()
        proc = start_model(run_dir, config, config["env"], None)
        limit = watch(proc, run_dir, config["limits"])
        code = proc.returncode
        for name, data in run_dir.reports().items():
            send_data(marker, 0, "report:" + name, data)
        frame(marker, t="end", i=0, code=code, limit=limit, started=started, ended=time.time())
        return 0 if code == 0 else 1
    except Exception as exc:
        frame(marker, t="end", i=0, code=None, error=failure(exc))
        return 1
    finally:
        if run_dir is not None:
            run_dir.remove()


# ---------------------------------------------------------------- points mode

def _kept(data):
    if len(data) <= 2 * LOG_KEEP:
        return bytes(data)
    dropped = len(data) - 2 * LOG_KEEP
    return bytes(data[:LOG_KEEP]) + b"\n[blankly_magics: %d bytes of output dropped here]\n" % dropped \
        + bytes(data[-LOG_KEEP:])


def run_point(config, point, secrets, files):
    """One point of a sweep, in a Ray task: its own folder and process; the result as a dict."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    started = time.time()
    run_dir = None
    try:
        run_dir = RunDir(config, files)
        run_dir.place_secrets(secrets)
        output = bytearray()
        proc = start_model(run_dir, config, point["env"], subprocess.PIPE)

        def pump():
            for chunk in iter(lambda: os.read(proc.stdout.fileno(), 65536), b""):
                output.extend(chunk)
                if len(output) > 4 * LOG_KEEP:
                    output[LOG_KEEP:-LOG_KEEP] = b"\n[blankly_magics: output dropped here]\n"

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        limit = watch(proc, run_dir, config["limits"])
        reader.join(5)
        return {"node": node, "code": proc.returncode, "limit": limit, "log": _kept(output),
                "reports": run_dir.reports(), "started": started, "ended": time.time()}
    except Exception as exc:
        return {"node": node, "code": None, "error": failure(exc), "log": b"", "reports": {}, "started": started,
                "ended": time.time()}
    finally:
        if run_dir is not None:
            run_dir.remove()


def run_points(config):
    import ray

    marker = config["frame"]
    frame(marker, t="begin", python="%d.%d" % sys.version_info[:2], pid=os.getpid())
    try:  # everything from the working directory is read before ray.init (see read_files)
        with open(os.path.join(HERE, "points.json"), encoding="utf-8") as fh:
            points = json.load(fh)
        files = read_files(WORKDIR)
        secrets = fetch_secrets()
    except Exception as exc:
        frame(marker, t="end", i=-1, code=None, error=failure(exc))
        return 1
    ray.init(log_to_driver=False)
    files = ray.put(files)
    options = {"num_cpus": config["cpu"], "scheduling_strategy": "SPREAD", "max_retries": 0}
    if config.get("memory"):
        options["memory"] = config["memory"]
    task = ray.remote(run_point).options(**options)
    pending, todo = {}, list(enumerate(points))
    while todo or pending:
        while todo and len(pending) < max(1, config.get("parallel", 1)):
            index, point = todo.pop(0)
            pending[task.remote(config, point, secrets, files)] = index
            frame(marker, t="start", i=index, at=time.time())
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            index = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # the task's worker died (a node lost, the job stopping)
                result = {"code": None, "error": "the point's Ray task failed: %s" % str(exc).splitlines()[0],
                          "log": b"", "reports": {}, "started": None, "ended": time.time()}
            send_data(marker, index, "log", result.pop("log"))
            for name, data in result.pop("reports").items():
                send_data(marker, index, "report:" + name, data)
            frame(marker, t="end", i=index, **result)
    return 0


def main():
    config = json.loads(os.environ["BLANKLY_MAGICS_RUN"])
    sys.exit(run_points(config) if config["mode"] == "points" else run_one(config))


if __name__ == "__main__":
    main()
