"""Peak memory of the client while uploading a big model, vs ``requests.post(files=...)``.

The model is built with our bundle (a one-cell script whose ``include`` is a big
file of random bytes, so the zip is as big as the data) and uploaded to our real
server (``--max-upload`` raised to fit). Each upload runs in a fresh child process
that signs in and imports what it needs first, then records its peak RSS
(``VmHWM``, reset to the current RSS through ``/proc/self/clear_refs`` just before
the upload, so the imports' peak cannot hide anything) against its RSS then: the
growth is what the upload itself held in memory. Ours is ``DeploymentClient.upload`` (a streaming multipart body);
the baseline is the plain ``requests`` call, which reads the file into memory and
then joins it into one body.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .harness import Row, child_env, interleaved, last_json_line, local_server, median, run_child, spread

NAME = "upload_memory"
MB = 1024 * 1024

CHILD = r"""
import json, sys, time
import requests
mode, url, refresh, zip_path = sys.argv[1:]

def status_mb(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key + ":")) / 1024  # kB

def start():
    # Forget the peak of the imports: the kernel resets VmHWM to the current RSS.
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status_mb("VmRSS")

if mode == "ours":
    import requests_toolbelt.multipart.encoder  # imported before the measure, as a warm kernel has it
    from blankly_magics.client import DeploymentClient
    client = DeploymentClient(url, refresh)
    client.login()
    before = start()
    started = time.perf_counter()
    answer = client.upload(zip_path, name="big model")
else:
    auth = requests.post(url + "/auth/token", data={"refreshToken": refresh}, timeout=30).json()
    fields = {"name": "big model", "projectId": auth["data"]["user_id"], "createNew": "True",
              "pythonVersion": "%d.%d" % sys.version_info[:2], "type": "strategy"}
    before = start()
    started = time.perf_counter()
    with open(zip_path, "rb") as fh:
        response = requests.post(url + "/model/upload", data=fields, headers={"token": auth["idToken"]},
                                 files={"model": ("model.zip", fh, "application/zip")}, timeout=600)
    answer = response.json()
seconds = time.perf_counter() - started
assert answer.get("versionId"), answer  # a refused upload would measure nothing
print(json.dumps({"growth_mb": status_mb("VmHWM") - before, "seconds": seconds}))
"""


def write_random(path: Path, size: int) -> None:
    """Incompressible bytes, so the zip is as big as the data."""
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            chunk = min(left, 8 * MB)
            fh.write(os.urandom(chunk))
            left -= chunk


def build_big_model(folder: Path, size: int) -> tuple[Path, int]:
    from blankly_magics.export import build_bundle

    model = folder / "model"
    model.mkdir(parents=True)
    write_random(model / "weights.bin", size)
    bundle = build_bundle(
        ["import os\nprint(os.path.getsize('weights.bin'))\n"], base_dir=model, include=["weights.bin"]
    )
    zip_path = bundle.write_zip(folder / "big-model.zip")
    (model / "weights.bin").unlink()  # only the zip is needed from here on
    return zip_path, zip_path.stat().st_size


def run(quick: bool = False) -> list[Row]:
    size, repeats = (20 * MB, 1) if quick else (300 * MB, 2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    try:
        zip_path, zip_size = build_big_model(tmp, size)
        limit = str(zip_size // MB + 100)
        with local_server(tmp / "data", ["--max-upload", limit, "--max-unpacked", limit]) as server:
            refresh = server.refresh_token()
            env = child_env()
            seconds: dict[str, list[float]] = {"ours": [], "requests": []}

            def sample(mode: str) -> float:
                got = last_json_line(run_child(CHILD, mode, server.url, refresh, str(zip_path), env=env))
                seconds[mode].append(got["seconds"])
                return got["growth_mb"]

            samples = interleaved({"ours": lambda: sample("ours"), "requests": lambda: sample("requests")}, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bundle_mb = zip_size / MB
    mine, theirs = median(samples["ours"]), median(samples["requests"])
    details = [
        f"bundle {bundle_mb:.1f} MB; peak RSS growth, MB: ours {spread(samples['ours'], 2)}, "
        f"requests {spread(samples['requests'])}",
        f"ours grows by {mine / bundle_mb:.1%} of the bundle, requests by {theirs / bundle_mb:.0%}",
        f"upload seconds: ours {spread(seconds['ours'], 2)}, requests {spread(seconds['requests'], 2)}",
    ]
    return [Row(f"upload memory: {bundle_mb:.0f} MB bundle", mine, theirs, "MB", details)]
