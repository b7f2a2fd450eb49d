"""The Ray executor's parts that need no cluster: a job's log split into output and frames, the
one-use ticket desk for secret files, a version's package, the cluster's requirements check."""
from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import pytest

from blankly_magics.server.runner import LogSink, RunRequest
from blankly_magics.server.runner.envs import satisfied_here
from blankly_magics.server.runner.ray_cluster import ClusterInfo
from blankly_magics.server.runner.ray_jobs import JobLog
from blankly_magics.server.runner.ray_secrets import TicketDesk
from blankly_magics.server.runner.ray_stage import KEEP_PACKAGES, job_package, stage
from tests.fixtures_server import write_model_zip

MARKER = "\x1eblankly_magics:0123456789abcdef:"


def framed(**data: object) -> str:
    return MARKER + json.dumps(data) + "\n"


def packed(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data)).decode()


def test_a_jobs_log_keeps_the_models_output_and_decodes_the_frames_however_it_is_cut(tmp_path: Path) -> None:
    report = json.dumps({"metrics": {"Sharpe Ratio": 0.79}}).encode()
    chunk = packed(report)
    text = (
        "2026-01-01 00:00:00,000\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        "Running entrypoint for job blankly-x: python _blankly/driver.py\n"
        + framed(t="begin", python="3.11")
        + "tick 1\nno newline at the end"  # the model's last line, cut by the next frame
        + framed(t="data", i=0, kind="report:backtest_result.json", b=chunk[:10])
        + framed(t="data", i=0, kind="report:backtest_result.json", b=chunk[10:])
        + framed(t="end", i=0, code=0, limit=None)
    )
    for cut in (1, 7, 64, len(text)):  # the tail delivers it in pieces of any size
        sink = LogSink(tmp_path / f"{cut}.log")
        frames: list[dict] = []
        log = JobLog(MARKER, sink, frames.append)
        half = len(text) // 2
        for start in range(0, half, cut):
            log.feed(text[start:min(start + cut, half)])
        log.complete(text)  # the job ended: the rest comes from get_job_logs, from where the tail stopped
        assert sink.path.read_text() == "tick 1\nno newline at the end"
        assert [f["t"] for f in frames] == ["begin", "end"] and frames[1]["code"] == 0
        assert log.kinds(0) == ["report:backtest_result.json"]
        assert log.take(0, "report:backtest_result.json") == report


def test_a_ticket_gets_the_secret_files_once_and_nobody_else_gets_anything(tmp_path: Path) -> None:
    desk = TicketDesk("127.0.0.1:0")
    try:
        ticket = desk.issue({"keys.json": b'{"API_SECRET": "s3cr3t"}'})
        assert ticket["url"].startswith("http://127.0.0.1:")

        def fetch(body: bytes) -> tuple[int, dict]:
            request = urllib.request.Request(ticket["url"], data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        assert fetch(json.dumps({"ticket": "guessed"}).encode()) == (404, {"error": "unknown, used or expired ticket"})
        status, answer = fetch(json.dumps({"ticket": ticket["ticket"]}).encode())
        assert status == 200 and base64.b64decode(answer["files"]["keys.json"]) == b'{"API_SECRET": "s3cr3t"}'
        assert fetch(json.dumps({"ticket": ticket["ticket"]}).encode())[0] == 404  # spent
        assert fetch(b"x" * 10_000)[0] == 404
        revoked = desk.issue({"keys.json": b"k"})
        desk.revoke(revoked["ticket"])
        assert fetch(json.dumps({"ticket": revoked["ticket"]}).encode())[0] == 404
    finally:
        desk.close()


CLUSTER = ClusterInfo("3.11", {"blankly": "1.18.25b0", "numpy": "1.26.4", "pandas": "2.2.2"},
                      {"python_version": "3.11", "sys_platform": "linux"})


@pytest.mark.parametrize("requirements, met", [
    ("blankly==1.18.25b0\nnumpy<2\n", True),
    ("pandas>=2 ; python_version >= '3.9'\n# a comment\n", True),
    ("pywin32 ; sys_platform == 'win32'\nnumpy\n", True),  # judged by the cluster's markers, not ours
    ("numpy>=2\n", False),
    ("scikit-learn\n", False),
    ("--extra-index-url https://example.org/simple\nnumpy\n", False),
])
def test_requirements_are_judged_against_the_clusters_environment(requirements: str, met: bool) -> None:
    assert satisfied_here(requirements, CLUSTER.distributions, CLUSTER.markers) is met


def test_a_version_becomes_one_package_built_once_with_the_driver_beside_it(tmp_path: Path) -> None:
    zip_path = write_model_zip(tmp_path / "v.zip", files={"data/prices.csv": "time,close\n1,2\n",
                                                          "requirements.txt": "numpy<2\n"}, python_version="3.11")
    request = RunRequest("backtest-b1", "backtest", tmp_path / "run", zip_path, "version-1", "3.11", {})
    first = stage(request, CLUSTER, tmp_path / "packages")
    again = stage(request, CLUSTER, tmp_path / "packages")
    assert first.package == again.package and first.pip is None and first.main_script == "bot.py"
    with zipfile.ZipFile(first.package) as zf:
        names = zf.namelist()
    assert {"model/blankly.json", "model/bot.py", "model/data/prices.csv", "_blankly/driver.py",
            "_blankly/launch.py", "_blankly/hook/blankly_external.py"} <= set(names)
    rebuilt = first.package.read_bytes()
    first.package.unlink()
    assert stage(request, CLUSTER, tmp_path / "packages").package.read_bytes() == rebuilt  # the same bytes: one upload

    ticketed = job_package(first, tmp_path / "run", {"ticket.json": b"{}"})
    with zipfile.ZipFile(ticketed) as zf:
        assert zf.read("_blankly/ticket.json") == b"{}" and set(zf.namelist()) == set(names) | {"_blankly/ticket.json"}
    assert job_package(first, tmp_path / "run", {}) == first.package

    other = RunRequest("backtest-b2", "backtest", tmp_path / "run2", zip_path, "version-1", "3.12", {})
    with pytest.raises(Exception, match=r"python 3.12 is not available on the Ray cluster \(its nodes run python "
                                        r"3.11\); upload the model for python 3.11"):
        stage(other, CLUSTER, tmp_path / "packages")
    missing = write_model_zip(tmp_path / "m.zip", files={"requirements.txt": "scikit-learn\n"})
    needs = stage(RunRequest("backtest-b3", "backtest", tmp_path / "r3", missing, "version-2", "", {}), CLUSTER,
                  tmp_path / "packages")
    assert needs.pip == ["scikit-learn"]


def test_old_packages_are_pruned_while_another_runs_build_is_left_alone(tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    packages.mkdir()
    for n in range(KEEP_PACKAGES + 3):  # older packages, oldest first
        old = packages / f"version-old{n}-0123456789abcdef.zip"
        old.write_bytes(b"PK")
        os.utime(old, (1_000_000 + n, 1_000_000 + n))
    building = packages / ".build-other.zip"  # another run's package, half written
    building.write_bytes(b"PK")
    os.utime(building, (1, 1))
    zip_path = write_model_zip(tmp_path / "v.zip", python_version="3.11")
    staged = stage(RunRequest("backtest-b1", "backtest", tmp_path / "run", zip_path, "version-new", "3.11", {}),
                   CLUSTER, packages)
    kept = sorted(p.name for p in packages.iterdir())
    assert building.exists() and staged.package.exists()
    assert len(kept) == KEEP_PACKAGES + 1  # the newest packages, and the build in progress
    assert not any(f"version-old{n}-" in name for n in range(4) for name in kept)  # the four oldest went
