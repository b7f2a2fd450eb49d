"""The README's first command, run as written in a fresh virtual environment, so it cannot rot."""
from __future__ import annotations

import os
import re
import subprocess
import venv
from pathlib import Path

import pytest

from tests.fixtures_notebooks import REPO


def readme_commands() -> list[str]:
    """The command of each ```bash block of the README, in order (comments dropped)."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [
        " && ".join(ln.strip() for ln in b.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))
        for b in blocks
    ]


def test_readme_opens_with_the_main_job_and_the_test_command() -> None:
    first, second = readme_commands()[:2]
    assert "run_quickstart.py" in first
    assert "pytest" in second
    ci = (REPO / ".ci" / "run").read_text()
    assert "README.md" in ci  # CI runs the README's own test command, not a copy


@pytest.mark.slow
def test_readme_main_job_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYENV"))}
    env.update(
        PATH=f"{env_dir / 'bin'}:{os.environ['PATH']}",
        VIRTUAL_ENV=str(env_dir),
        HOME=str(tmp_path / "home"),
        BLANKLY_MAGICS_HOME=str(tmp_path / "server-data"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # Keep pip's own cache so a fresh venv does not download every wheel again.
        PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip")),
        JUPYTER_PLATFORM_DIRS="1",
    )
    (tmp_path / "home").mkdir()
    first = readme_commands()[0]
    proc = subprocess.run(
        ["bash", "-c", first], cwd=REPO, env=env, capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Backtest metrics from the embedded deployment server" in proc.stdout
    assert "Sharpe Ratio" in proc.stdout
    assert "metrics match: True" in proc.stdout
    # The headless run stopped the server it started.
    assert not (tmp_path / "server-data" / "server.json").exists()
