"""LocalExecutor driven through the Executor interface: secret files, a venv built by pip inside the
sandbox, the reports handed back, and the sandbox's command line."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from blankly_magics.server.runner import LocalExecutor, LogSink, RunLimits, RunRequest
from blankly_magics.server.runner.process import RunStop
from blankly_magics.server.runner.sandbox import SANDBOX_VIEW, SandboxSpec, bwrap_command, find_bwrap
from tests.fixtures_server import write_model_zip

KEYS = b'{"binance": {"main": {"API_KEY": "key-4f1e", "API_SECRET": "very-secret-9a7c"}}}'
READS_KEYS = r'''
import hashlib, json, os, stat
info = os.stat("keys.json")
report = {"sha": hashlib.sha256(open("keys.json", "rb").read()).hexdigest(), "mode": oct(stat.S_IMODE(info.st_mode)),
          "uid": info.st_uid, "me": os.getuid(), "cwd": os.getcwd()}
json.dump(report, open(os.path.join(os.environ["BLANKLY_MAGICS_REPORT_DIR"], "keys-seen.json"), "w"))
print("keys read", flush=True)
'''


def request(tmp_path: Path, zip_path: Path, **kw) -> RunRequest:
    fields = dict(run_id="live-m1", kind="live", folder=tmp_path / "data" / "runs" / "live" / "m1", zip_path=zip_path,
                  version_id="v1", python_version="", env={"MODEL_ID": "m1"}, limits=RunLimits())
    fields.update(kw)
    return RunRequest(**fields)


def run(executor: LocalExecutor, req: RunRequest):
    log = LogSink(req.folder / "output.log")
    stop = RunStop()
    prepared = executor.prepare(req, log, stop)
    started = []
    end = executor.run(prepared, log, stop, lambda pid, at: started.append(pid))
    return prepared, end, log, started


def test_secret_files_are_the_runs_alone_and_go_when_it_ends(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "data", find_bwrap())
    executor.start()
    req = request(tmp_path, write_model_zip(tmp_path / "m.zip", files={"bot.py": READS_KEYS}),
                  secret_files={"keys.json": KEYS})
    assert "very-secret" not in repr(req)
    prepared, end, log, started = run(executor, req)
    assert end.code == 0 and end.reason is None and started and started[0] > 0
    seen = json.loads(end.reports["keys-seen.json"])
    assert seen == {"sha": hashlib.sha256(KEYS).hexdigest(), "mode": "0o600", "uid": 1000, "me": 1000,
                    "cwd": SANDBOX_VIEW.model}
    keys = prepared.folder.model / "keys.json"
    assert not keys.exists()  # removed as soon as the process ended
    executor.release(prepared)
    assert not prepared.folder.model.exists()
    text = log.path.read_text()
    assert "keys read" in text and "very-secret" not in text and "key-4f1e" not in text


def test_a_secret_file_name_must_be_a_plain_name(tmp_path: Path) -> None:
    from blankly_magics.server.runner import RunFailed

    executor = LocalExecutor(tmp_path / "data", find_bwrap())
    executor.start()
    req = request(tmp_path, write_model_zip(tmp_path / "m.zip"), secret_files={"../escape.json": b"{}"})
    log = LogSink(req.folder / "output.log")
    prepared = executor.prepare(req, log, RunStop())
    with pytest.raises(RunFailed, match="a secret file name must be a plain file name"):
        executor.run(prepared, log, RunStop(), lambda pid, at: None)
    executor.release(prepared)
    assert not (req.folder / "escape.json").exists()


SWAPS_ITS_FOLDER = r'''
import os
os.chdir("..")
os.rename("work", "work-old")
os.symlink({outside!r}, "work")  # on the host, a link out of the run's folder
print("swapped", flush=True)
'''


def test_secret_files_never_follow_a_link_the_runs_code_left(tmp_path: Path) -> None:
    from blankly_magics.server.runner import RunFailed

    outside = tmp_path / "outside"
    outside.mkdir()
    executor = LocalExecutor(tmp_path / "data", find_bwrap())
    executor.start()
    zip_path = write_model_zip(tmp_path / "m.zip", files={"work/bot.py": SWAPS_ITS_FOLDER.format(outside=str(outside)),
                                                          "work/keep.txt": "x"},
                               manifest={"main_script": "./work/bot.py", "working_directory": "./work"})
    req = request(tmp_path, zip_path, secret_files={"keys.json": KEYS})
    prepared, end, log, _ = run(executor, req)
    assert end.code == 0 and "swapped" in log.path.read_text()
    with pytest.raises(RunFailed, match="working directory now leads out of its folder"):
        executor.run(prepared, log, RunStop(), lambda pid, at: None)  # a restart: the keys are not placed
    executor.release(prepared)
    assert list(outside.iterdir()) == []  # nothing written (nor removed) through the link


@pytest.mark.slow
def test_a_model_needing_a_venv_gets_it_built_by_pip_in_its_sandbox_and_runs(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "data", find_bwrap())
    executor.start()
    script = "import os, six, sys\nprint('six', six.__version__, sys.prefix, os.getuid(), flush=True)\n"
    zip_path = write_model_zip(tmp_path / "six.zip", files={"bot.py": script, "requirements.txt": "six==1.15.0\n"})
    prepared, end, log, _ = run(executor, request(tmp_path, zip_path))
    text = log.path.read_text()
    assert end.code == 0, text
    assert f"six 1.15.0 {SANDBOX_VIEW.env} 1000" in text  # the venv, seen where every sandbox sees it
    assert "$ " in text and "pip install" in text  # the build's steps are in the run's log
    env_dir = prepared.interpreter.env_dir
    assert env_dir.parent == tmp_path / "data" / "envs" and (env_dir / ".ready").exists()
    if os.geteuid() == 0:  # built by the run's own unprivileged user, not by the server's root
        assert env_dir.stat().st_uid >= 1_800_000_000
    executor.release(prepared)
    again, end2, log2, _ = run(executor, request(tmp_path, zip_path, run_id="live-m2",
                                                 folder=tmp_path / "data" / "runs" / "live" / "m2"))
    assert end2.code == 0 and "pip install" not in log2.path.read_text()  # the cached env, as it was built
    executor.release(again)


def test_the_sandbox_shows_the_runs_folders_at_fixed_paths_and_system_folders_read_only(tmp_path: Path) -> None:
    folders = {name: tmp_path / name for name in ("model", "report", "home", "tmp")}
    spec = SandboxSpec(folders=folders, argv=(sys.executable, "/blankly/model/bot.py"), cwd="/blankly/model",
                       prefixes=(Path(sys.base_prefix),), network=False)
    cmd = bwrap_command(spec, "/usr/bin/bwrap")
    pairs = {(cmd[i], cmd[i + 1], cmd[i + 2]) for i in range(len(cmd) - 2) if cmd[i].endswith("bind")}
    for name, path in folders.items():
        assert ("--bind", str(path), getattr(SANDBOX_VIEW, name)) in pairs
    assert ("--ro-bind", "/usr", "/usr") in pairs
    assert all(flag in cmd for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--disable-userns",
                                        "--die-with-parent", "--new-session"))
    assert cmd[cmd.index("--cap-drop") + 1] == "ALL" and cmd[cmd.index("--uid") + 1] == "1000"
    writable = [dest for flag, _, dest in pairs if flag == "--bind"]
    # Nothing else is writable: /dev/shm is the run's /tmp again; the sandbox's own tmpfs go read-only.
    assert sorted(writable) == sorted([getattr(SANDBOX_VIEW, n) for n in folders] + ["/dev/shm"])
    assert ("--bind", str(folders["tmp"]), "/dev/shm") in pairs
    assert cmd[-len(spec.argv) - 7:-len(spec.argv) - 3] == ["--remount-ro", "/dev", "--remount-ro", "/"]
    assert not any(str(Path.home()) == dest for _, _, dest in pairs)
    assert stat.S_ISDIR(os.stat(spec.mounts()[0].source).st_mode)


def test_a_python_under_tmp_is_mounted_after_the_runs_own_tmp(tmp_path: Path) -> None:
    venv = Path("/tmp/a-venv-made-here")  # e.g. a venv a test or a user made in /tmp
    spec = SandboxSpec(folders={"tmp": tmp_path / "tmp"}, argv=(f"{venv}/bin/python",), cwd="/", prefixes=(venv,))
    dests = [m.dest for m in spec.mounts()]
    assert dests.index(str(venv)) > dests.index("/tmp")  # else the run's /tmp would hide it
