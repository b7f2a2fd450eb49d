"""A second user's model tries to reach the first user's, the server's data and its keys: every try fails.

One real server (bubblewrap found on PATH), two users made with the ``token --user``
command, one live model each. Mallory's model is a probe: from inside its run it
lists and reads the data dir (versions, database, signing key, other runs' files),
walks up from its working directory, looks through /proc for the server's and
other runs' processes and their environment, signals Alice's run, reads a file
planted in the server user's HOME, and searches every file it can open for
Alice's secret. The test reads the probe's findings from Mallory's log, as
Mallory would.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from tests.fixtures_server import ServerHandle, wait_for, write_model_zip

ALICE_SECRET = "alice-strategy-constant-7f3a9c"
PLANTED = "planted-in-the-server-users-home-51d2"
ALICE_MODEL = (
    f"SECRET = {ALICE_SECRET!r}\n"
    "import time\n"
    "open('alice-notes.txt', 'w').write(SECRET)\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    print('alice tick', n, flush=True)\n"
    "    time.sleep(0.3)\n"
)

PROBE = r'''
import json, os, signal, sys, time
DATA, HOME, ALICE_MODEL, ALICE_PIDS, SERVER_PID, REVERSED = {params}
SECRETS = [s[::-1] for s in REVERSED]  # written reversed, so this script itself holds none of them
found = {{}}

def attempt(name, action):
    try:
        found[name] = "open: " + repr(action())[:300]
    except Exception as exc:
        found[name] = "denied: " + type(exc).__name__

attempt("list the data dir", lambda: os.listdir(DATA))
attempt("read the database", lambda: open(DATA + "/blankly.db", "rb").read(64))
attempt("read the signing key", lambda: open(DATA + "/signing.key", "rb").read())
attempt("read server.json", lambda: open(DATA + "/server.json").read())
attempt("list the stored versions", lambda: os.listdir(DATA + "/versions"))
attempt("list the other runs", lambda: os.listdir(DATA + "/runs/live"))
attempt("read alice's running script", lambda: open(DATA + "/runs/live/" + ALICE_MODEL + "/model/bot.py").read())
attempt("read alice's log", lambda: open(DATA + "/runs/live/" + ALICE_MODEL + "/output.log").read())
attempt("list the environments", lambda: os.listdir(DATA + "/envs"))
attempt("read the planted file in the server user's HOME", lambda: open(HOME + "/planted.txt").read())
attempt("list the server user's ssh keys", lambda: os.listdir("/root/.ssh"))
attempt("read /etc/shadow", lambda: open("/etc/shadow").read())
attempt("write into /usr", lambda: open("/usr/probe.txt", "w"))
for folder in ("/", "/dev", "/etc", "/blankly", "/root"):  # memory-backed tmpfs: would escape every limit
    attempt("write into " + folder, lambda: open(os.path.join(folder, "probe.txt"), "w"))
attempt("write into the hook", lambda: open("/blankly/hook/blankly_external.py", "a"))
attempt("read the server's environment", lambda: open("/proc/%d/environ" % SERVER_PID, "rb").read())
attempt("signal the server", lambda: os.kill(SERVER_PID, 0))
for pid in ALICE_PIDS:
    attempt("signal alice's process %d" % pid, lambda: os.kill(pid, signal.SIGKILL))
    attempt("read alice's environment %d" % pid, lambda: open("/proc/%d/environ" % pid, "rb").read())

# Walk up from the working directory; list what each folder holds.
walk, folder = {{}}, os.getcwd()
while True:
    walk[folder] = sorted(os.listdir(folder))
    if folder == "/":
        break
    folder = os.path.dirname(folder)

# Every process this run can see, with its command line and environment.
seen = {{}}
for name in os.listdir("/proc"):
    if name.isdigit():
        try:
            cmdline = open("/proc/%s/cmdline" % name, "rb").read().replace(b"\0", b" ").decode()
            environ = open("/proc/%s/environ" % name, "rb").read().decode(errors="replace")
        except OSError as exc:
            cmdline, environ = "unreadable: %s" % type(exc).__name__, ""
        seen[name] = {{"cmdline": cmdline, "model": [v for v in environ.split("\0") if v.startswith("MODEL_ID=")]}}
# Every file it can open outside the system and interpreter folders: any of the secrets in it?
skip = ("/proc", "/sys", "/dev", "/usr", os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))
hits, scanned = [], 0
for root, dirs, files in os.walk("/"):
    if root.startswith(skip):
        dirs[:] = []
        continue
    for file in files:
        path = os.path.join(root, file)
        try:
            with open(path, "rb") as fh:
                data = fh.read(1 << 20)
        except OSError:
            continue
        scanned += 1
        hits += [path for secret in SECRETS if secret.encode() in data]

status = open("/proc/self/status").read()
found.update(walk=walk, processes=seen, hits=hits, scanned=scanned, uid=os.getuid(), root_home=(
    sorted(os.listdir("/root")) if os.path.isdir("/root") else None),
    caps=[l for l in status.splitlines() if l.startswith(("CapEff", "CapPrm", "NoNewPrivs"))])
print("PROBE " + json.dumps(found), flush=True)
while True:
    time.sleep(1)
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("confined")
    home = root / "server-home"
    home.mkdir()
    (home / "planted.txt").write_text(PLANTED)
    handle = ServerHandle(root / "data", root / "server.log", ["--max-workers", "2"],
                          {**os.environ, "HOME": str(home)})
    handle.home = home  # type: ignore[attr-defined]
    handle.start()
    try:
        for user in ("alice", "mallory"):
            done = handle.token_command(user)
            assert done.returncode == 0, done.stderr
        yield handle
    finally:
        handle.close()


def deploy(server: ServerHandle, user: str, zip_path: Path, name: str) -> dict:
    with open(zip_path, "rb") as fh:
        answer = server.request("POST", "/model/deploy", user=user, data={"plan": "nano", "name": name,
                                "createNew": "true"}, files={"model": ("model.zip", fh, "application/zip")})
    assert answer.status_code == 200, answer.text
    model_id = answer.json()["modelId"]
    return wait_for(lambda: (d := server.request("GET", "/model/deployment", user=user,
                                                 params={"modelId": model_id}).json())["state"] == "running"
                    and d["pid"] and d, f"{user}'s model to run")


def logs(server: ServerHandle, user: str, model_id: str) -> str:
    return server.request("GET", "/model/logs", user=user, params={"modelId": model_id}).json()["text"]


def test_a_second_users_model_reaches_nothing_of_the_first_users_the_servers_or_its_keys(
    server: ServerHandle, tmp_path: Path
) -> None:
    alice = deploy(server, "alice", write_model_zip(tmp_path / "alice.zip", files={"bot.py": ALICE_MODEL}), "alpha")
    alice_pids = [alice["pid"]] + [p.pid for p in psutil.Process(alice["pid"]).children(recursive=True)]
    assert server.health()["isolation"] == "bubblewrap"
    params = (str(server.data_dir), str(server.home), alice["modelId"], alice_pids, server.proc.pid,
              [secret[::-1] for secret in (ALICE_SECRET, PLANTED, (server.data_dir / "signing.key").read_bytes().hex())])
    probe = PROBE.format(params=repr(params))
    mallory = deploy(server, "mallory", write_model_zip(tmp_path / "probe.zip", files={"bot.py": probe}), "probe")
    line = wait_for(lambda: next((l for l in logs(server, "mallory", mallory["modelId"]).splitlines()
                                  if l.startswith("PROBE ")), None), "the probe's findings", 120)
    found = json.loads(line[len("PROBE "):])

    attempts = {k: v for k, v in found.items() if isinstance(v, str)}
    assert len(attempts) >= 20
    assert {k: v for k, v in attempts.items() if not v.startswith("denied")} == {}
    assert found["hits"] == [] and found["scanned"] > 5  # Alice's secret, the planted file, the key: nowhere
    names = {name for entries in found["walk"].values() for name in entries}
    assert not names & {"blankly.db", "signing.key", "server.json", "versions", "runs", "envs", "pids"}
    assert list(found["walk"]) == ["/blankly/model", "/blankly", "/"]
    # Its own run's processes only: no server, nothing of Alice's.
    cmdlines = [p["cmdline"] for p in found["processes"].values()]
    assert 1 <= len(cmdlines) <= 4 and not any("blankly_magics.server" in c for c in cmdlines)
    assert {tuple(p["model"]) for p in found["processes"].values()} <= {(), (f"MODEL_ID={mallory['modelId']}",)}
    # Of HOME, at most the top folders of the interpreter's prefixes (pyenv's, a venv's) are there.
    prefixes = {Path(p).parts[2] for p in (sys.prefix, sys.base_prefix) if Path(p).parts[:2] == ("/", "root")}
    assert found["uid"] == 1000 and (found["root_home"] is None or set(found["root_home"]) <= prefixes)
    assert "NoNewPrivs:\t1" in found["caps"] and "CapEff:\t0000000000000000" in found["caps"]

    # Alice's model never noticed: same process, still running, its log still growing.
    before = logs(server, "alice", alice["modelId"]).count("alice tick")
    wait_for(lambda: logs(server, "alice", alice["modelId"]).count("alice tick") > before + 2, "alice's ticks")
    again = server.request("GET", "/model/deployment", user="alice", params={"modelId": alice["modelId"]}).json()
    assert again["state"] == "running" and again["pid"] == alice["pid"] and again["restarts"] == 0
    assert all(psutil.Process(pid).is_running() for pid in alice_pids)
    assert ALICE_SECRET not in logs(server, "mallory", mallory["modelId"])
    for user, dep in (("alice", alice), ("mallory", mallory)):
        assert server.request("POST", "/model/kill", user=user, data={"modelId": dep["modelId"]}).ok
