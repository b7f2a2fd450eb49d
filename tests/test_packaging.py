"""The wheel ships a kernelspec that loads the extension, and nothing that overwrites user config."""
from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.fixtures_notebooks import REPO

KERNEL = "python3-blankly"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        check=True, capture_output=True,
    )
    (whl,) = out.glob("blankly_magics-*.whl")
    return whl


def test_wheel_ships_the_kernelspec_and_no_ipython_config(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    spec = [n for n in names if n.endswith(f"share/jupyter/kernels/{KERNEL}/kernel.json")]
    assert len(spec) == 1, names
    assert not [n for n in names if "etc/ipython" in n or "etc/jupyter" in n]
    kernel = json.loads(zipfile.ZipFile(wheel).read(spec[0]))
    assert kernel["display_name"] == "Python 3 (Blankly)"
    assert "--ext=blankly_magics" in kernel["argv"]


def test_the_kernel_has_its_logo_in_both_sizes_jupyterlab_shows(wheel: Path) -> None:
    import struct

    archive = zipfile.ZipFile(wheel)
    for side in (32, 64):
        (name,) = [n for n in archive.namelist() if n.endswith(f"kernels/{KERNEL}/logo-{side}x{side}.png")]
        png = archive.read(name)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (side, side)  # the IHDR's width and height


def test_install_adds_the_kernelspec_and_uninstall_removes_it(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    py = env / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    spec = env / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    assert spec.is_file()
    subprocess.run([py, "-m", "pip", "uninstall", "-q", "-y", "blankly_magics"], check=True)
    assert not spec.exists()


def test_a_kernel_from_the_kernelspec_has_the_magics_without_load_ext() -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.fail(f"kernelspec {KERNEL} is not installed: run pip install -e . first")
    km, kc = start_new_kernel(kernel_name=KERNEL)
    try:
        code = (
            "m = get_ipython().magics_manager.magics\n"
            "print(sorted(k for k in {**m['line'], **m['cell']} if k.startswith('blankly')))"
        )
        msg_id = kc.execute(code)
        seen = []
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                seen.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        out = "".join(seen)
        for name in ("blankly", "blankly_deploy", "blankly_login", "blankly_logout"):
            assert f"'{name}'" in out, out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
