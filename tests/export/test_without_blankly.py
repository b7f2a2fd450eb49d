"""Building a Blankly model where blankly is not installed (Python 3.12 and newer, where it
does not install): the build goes through, requiring blankly with no version."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import packaging
import traitlets

from tests.fixtures_notebooks import REPO, RSI_ENTRY


def test_a_blankly_model_builds_where_blankly_is_not_installed(rsi_notebook: Path, tmp_path: Path) -> None:
    # `python -S`: no site-packages, so neither blankly nor its metadata is there; the build
    # needs only the package and the dependencies it imports on this path, given on PYTHONPATH.
    libs = tmp_path / "libs"
    for module in (packaging, traitlets):
        shutil.copytree(Path(module.__file__).parent, libs / module.__name__)
    entry = tmp_path / "entry.py"
    entry.write_text(RSI_ENTRY)
    out = tmp_path / "model.zip"
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "blankly_magics", "build", str(rsi_notebook), "-o", str(out),
         "--entry", str(entry)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(libs), str(REPO)])},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out) as zf:
        assert zf.read("model/requirements.txt").decode() == "blankly\nnumpy<2\n"
    assert ("blankly is not installed here, so requirements.txt says `blankly` with no version: the server runs the "
            "model with the blankly it has (name `blankly==X.Y.Z` in the requirements to pin one)") in proc.stdout
    assert "Requirements: blankly, numpy<2" in proc.stdout
