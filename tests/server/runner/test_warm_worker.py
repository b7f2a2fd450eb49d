"""The warm worker program itself (worker/worker.py), run as a real process over its real socket: a
script handed to it behaves as ``python script`` does (output, exit code, traceback, ``__main__``,
argv, path, environment), what the imports printed comes first, and forked jobs report apart."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from blankly_magics.server.runner.sandbox import WORKER_DIR
from blankly_magics.server.runner.warm import receive, send_job

WORKER = str(WORKER_DIR / "worker.py")

SCRIPTS = {
    "fine": ("import os, sys\nprint('name', __name__, 'file', __file__, 'argv', sys.argv, 'path0', sys.path[0])\n"
             "print('cwd', os.getcwd(), 'env', sorted(k for k in os.environ if k.startswith('JOB_')))\n"
             "print('to stderr', file=sys.stderr)\nimport atexit\natexit.register(print, 'at exit')\n"),
    "raises": "def f():\n    return 1 / 0\n\nprint('before')\nf()\n",
    "exits": "import sys\nprint('leaving')\nsys.exit(7)\n",
    "exits-text": "import sys\nsys.exit('a message, then code 1')\n",
    "syntax": "x = (\nprint('never')\n",
}


class Worker:
    """worker.py as a plain process (no sandbox), its end of the socket kept by the test."""

    def __init__(self, tmp: Path, modules: str = "") -> None:
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "WORKER_ONLY": "1", "TMPDIR": str(tmp)}
        self.proc = subprocess.Popen([sys.executable, WORKER, str(theirs.fileno()), modules], pass_fds=(theirs.fileno(),),
                                     env=env, cwd=tmp, stdin=subprocess.DEVNULL)
        theirs.close()
        self.ready = receive(self.ctl, 60)

    def job(self, script: Path, key: int = 0, lane: Optional[int] = None, **env: str) -> tuple[int, socket.socket]:
        read_end, write_end = os.pipe()
        job = {"key": key, "argv": [sys.executable, str(script)], "cwd": str(script.parent),
               "env": {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", **env}, "rlimits": {}}
        send_job(self.ctl, job if lane is None else {**job, "lane": lane, "root": str(script.parent)}, write_end)
        os.close(write_end)
        return read_end, self.ctl

    def close(self) -> Optional[int]:
        self.ctl.close()
        return self.proc.wait(30)


def read_all(fd: int) -> str:
    with os.fdopen(fd, "rb") as fh:
        return fh.read().decode()


def cold(script: Path, **env: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, str(script)], cwd=script.parent, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env={"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", **env})
    return done.returncode, done.stdout.decode()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_run_by_the_worker_behaves_as_python_script(tmp_path: Path, name: str) -> None:
    (tmp_path / "model").mkdir()
    script = tmp_path / "model" / "bot.py"
    script.write_text(SCRIPTS[name])
    worker = Worker(tmp_path)
    assert worker.ready == {"ready": worker.proc.pid, "skipped": []}
    fd, _ = worker.job(script, JOB_ID="b1")
    output = read_all(fd)
    assert (worker.close(), output) == cold(script, JOB_ID="b1")
    if name == "fine":
        assert f"name __main__ file {script} argv ['{script}'] path0 {script.parent}" in output
        assert "env ['JOB_ID']" in output and output.endswith("at exit\n")  # the worker's own WORKER_ONLY is gone


def test_what_the_imports_printed_comes_first_and_a_missing_module_is_skipped(tmp_path: Path) -> None:
    script = tmp_path / "bot.py"
    script.write_text("print('the model speaks')\n")
    worker = Worker(tmp_path, "this,no_such_module_here")  # `this` prints the Zen of Python when imported
    assert worker.ready["skipped"] == ["no_such_module_here"]
    fd, _ = worker.job(script)
    output = read_all(fd)
    assert worker.close() == 0
    assert output.startswith("The Zen of Python, by Tim Peters") and output.endswith("the model speaks\n")


def test_lanes_run_jobs_apart_and_report_their_exit_codes(tmp_path: Path) -> None:
    script = tmp_path / "bot.py"
    script.write_text("import os, sys\nimport json\nprint('job', os.environ['JOB_ID'], flush=True)\n"
                      "sys.exit(int(os.environ['JOB_ID']))\n")
    worker = Worker(tmp_path, "json")
    worker.ctl.send(json.dumps({"fork": True}).encode())
    outputs = {}
    for key in (3, 5):
        fd, _ = worker.job(script, key=key, lane=key, JOB_ID=str(key))
        outputs[key] = read_all(fd)
    messages = [receive(worker.ctl, 30) for _ in range(4)]
    assert {(m.get("exited"), m.get("code")) for m in messages if "exited" in m} == {(3, 3), (5, 5)}
    assert sorted(m["started"] for m in messages if "started" in m) == [3, 5]
    assert outputs == {3: "job 3\n", 5: "job 5\n"}
    assert worker.close() == 0  # the socket closed: the worker ends


LANE_JOB = """import os, sys, random, json
import helper
print("job", os.environ["JOB_ID"], "main", sorted(k for k in globals() if k.startswith("left")),
      "helper", helper.COUNT, "path", sys.path.count("/added"), "pid", os.getpid(), flush=True)
helper.COUNT += 1
left_by_job = True
sys.path.append("/added")
if os.environ["JOB_ID"] == "fail":
    raise SystemExit(4)
"""


def test_a_lane_runs_its_jobs_in_one_process_each_as_a_fresh_script_sees_it(tmp_path: Path) -> None:
    worker = Worker(tmp_path, "json")
    worker.ctl.send(json.dumps({"fork": True}).encode())
    seen = []
    for n, job_id in enumerate(["a", "b", "fail", "c"]):
        model = tmp_path / f"model-{n}"  # each job has its own copy of the model, as a sweep's points do
        model.mkdir()
        (model / "bot.py").write_text(LANE_JOB)
        (model / "helper.py").write_text("COUNT = 0\n")
        fd, _ = worker.job(model / "bot.py", key=n, lane=0, JOB_ID=job_id)
        seen.append(read_all(fd))
        started, exited = receive(worker.ctl, 30), receive(worker.ctl, 30)
        assert (started["started"], exited) == (n, {"exited": n, "code": 4 if job_id == "fail" else 0})
    pids = [line.split("pid ")[1] for line in seen]
    assert [line.split(" pid")[0] for line in seen] == [
        f"job {job_id} main [] helper 0 path 0" for job_id in ("a", "b", "fail", "c")]
    assert pids[0] == pids[1] == pids[2] != pids[3]  # one process until a job failed, then a fresh fork
    assert worker.close() == 0


@pytest.mark.parametrize("leftover", [
    "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n",
    "import subprocess\nopen('child.pid', 'w').write(str(subprocess.Popen(['sleep', '30']).pid))\n",
])
def test_a_job_that_leaves_a_thread_or_a_process_running_ends_its_lane(tmp_path: Path, leftover: str) -> None:
    script = tmp_path / "bot.py"
    script.write_text("import os\nprint(os.getpid(), flush=True)\nif os.environ['JOB_ID'] == '0':\n"
                      + "".join("    " + line + "\n" for line in leftover.splitlines()))
    worker = Worker(tmp_path)
    worker.ctl.send(json.dumps({"fork": True}).encode())
    pids = []
    for key in (0, 1, 2):
        fd, _ = worker.job(script, key=key, lane=0, JOB_ID=str(key))
        started, exited = receive(worker.ctl, 30), receive(worker.ctl, 30)
        assert started["started"] == key and exited == {"exited": key, "code": 0}
        if key == 0:  # the thread or process left behind holds the pipe: its first line is the job's
            with os.fdopen(fd, "rb") as fh:
                pids.append(fh.readline().decode().strip())
        else:
            pids.append(read_all(fd).strip())
    assert pids[0] != pids[1] == pids[2]  # a fresh fork after the job that left something running
    assert worker.close() == 0
    if (tmp_path / "child.pid").exists():  # the process the job left (a sandbox's end would end it)
        try:
            os.kill(int((tmp_path / "child.pid").read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass
