"""``blankly-magics keys`` from a terminal: values typed at hidden prompts in a real pseudo-terminal,
a keys.json imported, names listed, portfolios deleted; against the real server."""
from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from ..fixtures_server import ServerHandle

TYPED_KEY = "cliTypedKeyQ1W2E3R4"
TYPED_SECRET = "cliTypedSecretT5Y6U7I8"


def command(server: ServerHandle, *args: str) -> list[str]:
    return [sys.executable, "-m", "blankly_magics", "keys", *args, "--url", server.url, "--token-env", "ALICE_TOKEN"]


def in_terminal(argv: list[str], env: dict, answers: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal, typing each answer when its prompt shows; (exit code, all it showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal on stdin, stdout and stderr
        os.execve(argv[0], argv, env)
    shown, pending, deadline = b"", dict(answers), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            for prompt in [p for p in pending if p.encode() in shown]:
                os.write(fd, (pending.pop(prompt) + "\n").encode())
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_keys_set_import_list_and_delete_from_a_terminal(local_server: ServerHandle, tmp_path: Path) -> None:
    env = {**os.environ, "ALICE_TOKEN": local_server.refresh_token("alice")}
    code, shown = in_terminal(command(local_server, "set", "alpaca", "main", "--sandbox"), env,
                              {"alpaca/main API_KEY: ": TYPED_KEY, "alpaca/main API_SECRET: ": TYPED_SECRET})
    assert code == 0, shown
    assert "Stored on the server from what you typed: alpaca/main" in shown
    assert TYPED_KEY not in shown and TYPED_SECRET not in shown  # never echoed by the terminal

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"binance": {"spot": {"API_KEY": "k" * 24, "API_SECRET": "s" * 24}}}))
    done = subprocess.run(command(local_server, "import", str(keys)), capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0 and done.stdout == f"Stored on the server from {keys}: binance/spot\n", done.stderr
    listed = subprocess.run(command(local_server), capture_output=True, text=True, env=env,
                            stdin=subprocess.DEVNULL, timeout=120).stdout
    assert "Stored exchange keys (2)" in listed and "alpaca    main       API_KEY, API_SECRET, sandbox  True" in listed
    assert TYPED_SECRET not in listed and "s" * 24 not in listed

    no_terminal = subprocess.run(command(local_server, "set", "alpaca", "other"), capture_output=True, text=True,
                                 env=env, stdin=subprocess.DEVNULL, timeout=120)
    assert no_terminal.returncode == 2 and no_terminal.stderr == (
        "error: keys set asks for each value with a hidden prompt and there is no terminal here: store a "
        "keys.json with `keys import PATH` instead\n")
    usage = subprocess.run(command(local_server, "delete"), capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=120)
    assert usage.returncode == 2 and usage.stderr == "error: usage: blankly-magics keys delete EXCHANGE [PORTFOLIO]\n"
    deleted = subprocess.run(command(local_server, "delete", "binance"), capture_output=True, text=True, env=env,
                             stdin=subprocess.DEVNULL, timeout=120)
    assert deleted.stdout == "Deleted from the server: binance/spot\n", deleted.stderr
    missing = subprocess.run(command(local_server, "delete", "binance"), capture_output=True, text=True, env=env,
                             stdin=subprocess.DEVNULL, timeout=120)
    assert missing.returncode == 2 and "no stored keys for binance" in missing.stderr
