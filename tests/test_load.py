"""Load on loopback: 50 backtest submissions from 10 client threads against a bounded queue.

The server runs one backtest at a time and lets at most 5 wait. Every submission must be
either accepted (a backtestId) or refused with 429/503 and a Retry-After hint; none may
vanish, every accepted one must end completed or failed with its reason, and the queue
must never hold more than its bound (watched straight in the database while the load runs).
The model is cheap on purpose — it writes its own result file where the platform hook
would, or raises when asked — so the test exercises the server's queue, not Blankly, and
ends by itself in bounded time.
"""
from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from pathlib import Path

from blankly_magics.client import DeploymentClient, DeploymentError
from tests.fixtures_server import ServerHandle, wait_for, write_model_zip
from tests.reliability import record

THREADS = 10
PER_THREAD = 5
MAX_QUEUE = 5
MAX_WORKERS = 1
CHEAP_MODEL = """import base64, json, os
args = json.loads(base64.b64decode(os.environ["BACKTESTING_ARGS"]))
if args.get("fail"):
    raise RuntimeError(f"asked to fail (submission {args['n']})")
report = os.path.join(os.environ["BLANKLY_MAGICS_REPORT_DIR"], "backtest_result.json")
with open(report, "w") as fh:
    json.dump({"metrics": {"submission": args["n"]}, "account_values": []}, fh)
"""
TERMINAL = ("completed", "failed", "cancelled")


def count(data_dir: Path, status: str) -> int:
    conn = sqlite3.connect(f"file:{data_dir / 'blankly.db'}?mode=ro", uri=True, timeout=15)
    try:
        return conn.execute("SELECT COUNT(*) FROM backtests WHERE status = ?", (status,)).fetchone()[0]
    finally:
        conn.close()


def test_fifty_submissions_from_ten_threads_are_each_accepted_or_refused_and_none_is_lost(server_factory, tmp_path):
    server: ServerHandle = server_factory(args=["--max-queue", str(MAX_QUEUE), "--max-workers", str(MAX_WORKERS)])
    token = server.refresh_token("alice")
    zip_path = write_model_zip(tmp_path / "cheap.zip", files={"bot.py": CHEAP_MODEL})
    accepted: dict[int, str] = {}
    refused: Counter = Counter()
    hints: set = set()
    unexpected: list[str] = []
    peaks = {"queued": 0, "running": 0}
    lock = threading.Lock()
    done = threading.Event()

    def watch_queue() -> None:
        while not done.wait(0.02):
            for status in peaks:
                seen = count(server.data_dir, status)
                peaks[status] = max(peaks[status], seen)

    def submitter(thread: int) -> None:
        client = DeploymentClient(server.url, token, retries=0)
        for i in range(PER_THREAD):
            n = thread * PER_THREAD + i
            try:
                answer = client.backtest(zip_path, plan="small", name=f"load-{n}",
                                         backtest_args={"n": n, "fail": n % 2 == 0})
            except DeploymentError as exc:
                with lock:
                    if exc.status in (429, 503) and exc.retry_after:
                        refused[exc.status] += 1
                        hints.add(exc.retry_after)
                    else:
                        unexpected.append(str(exc))
                continue
            with lock:
                accepted[n] = answer["backtestId"]

    watcher = threading.Thread(target=watch_queue, daemon=True)
    watcher.start()
    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    client = DeploymentClient(server.url, token)

    def all_finished() -> dict:
        statuses = {n: client.backtest_status(b) for n, b in accepted.items()}
        return statuses if all(s["status"] in TERMINAL for s in statuses.values()) else {}

    try:
        finished = wait_for(all_finished, "every accepted backtest to finish", timeout=600, poll=1.0)
    finally:
        done.set()
        watcher.join(10)

    assert not unexpected, unexpected
    assert len(accepted) + sum(refused.values()) == THREADS * PER_THREAD, "a submission got no clear answer"
    assert accepted, "the server accepted nothing"
    assert peaks["queued"] <= MAX_QUEUE, f"the queue held {peaks['queued']} backtests, over its bound of {MAX_QUEUE}"
    assert peaks["running"] <= MAX_WORKERS
    for n, status in finished.items():
        if n % 2 == 0:
            assert status["status"] == "failed" and f"asked to fail (submission {n})" in status["error"], status
        else:
            assert status["status"] == "completed", status
            assert client.backtest_result(accepted[n])["result"]["metrics"] == {"submission": n}
    # none lost and none extra: the server holds exactly the accepted ones, each with its version
    stored = {b["backtestId"] for m in client.models() for b in client.backtests(m["modelId"])}
    assert stored == set(accepted.values())
    assert sum(len(client.versions(m["modelId"])) for m in client.models()) == len(accepted)
    outcome = Counter(s["status"] for s in finished.values())
    record("load", "50 concurrent backtest submissions from 10 client threads (queue bound 5, 1 worker)",
           what="each accepted or refused with 429/503 and Retry-After; none lost; each accepted one "
                "completed or failed with its reason; queue never over its bound",
           submitted=THREADS * PER_THREAD, accepted=len(accepted), refused=dict(refused),
           retry_after=sorted(hints), completed=outcome["completed"], failed_as_asked=outcome["failed"],
           peak_queued=peaks["queued"], queue_bound=MAX_QUEUE, peak_running=peaks["running"])
