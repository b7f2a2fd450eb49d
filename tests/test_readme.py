"""The README: short, opening with the two commands for a fresh machine, and the first one
run as written in a fresh virtual environment, so it cannot rot."""
from __future__ import annotations

import os
import re
import subprocess
import venv
from pathlib import Path

import pytest

from tests.fixtures_notebooks import REPO

README = REPO / "README.md"
MAX_LINES = 250


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def readme_commands() -> list[str]:
    """The command of each ```bash block of the README, in order (comments dropped)."""
    return [
        " && ".join(ln.strip() for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))
        for lang, body in fenced_blocks(README.read_text()) if lang == "bash"
    ]


def test_readme_stays_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; the manual belongs in docs/"


def test_readme_opens_with_the_main_job_and_the_test_command() -> None:
    text = README.read_text()
    blocks = fenced_blocks(text)
    assert [lang for lang, _ in blocks[:2]] == ["bash", "bash"], "the README must open with two bash blocks"
    assert [lang for lang, _ in blocks].count("bash") == 2, "only the two commands are bash blocks"
    # Nothing but the title and a few lines of what it is come before them.
    assert text.index("```bash") < 600
    first, second = readme_commands()
    assert "run_quickstart.py" in first and "pip install" in first
    assert second.startswith("pip install") and "python -m pytest" in second


def test_ci_runs_the_readme_test_command_as_written() -> None:
    """.ci/run extracts the second block's first command line; run that extraction here."""
    ci = (REPO / ".ci" / "run").read_text()
    extract = re.search(r"test_cmd=\$\((awk .*README\.md)\)", ci)
    assert extract, "`.ci/run` no longer takes its test command from the README"
    got = subprocess.run(["bash", "-c", extract.group(1)], cwd=REPO, capture_output=True, text=True, check=True)
    second_block = [body for lang, body in fenced_blocks(README.read_text()) if lang == "bash"][1]
    first_line = next(ln for ln in second_block.splitlines() if ln.strip() and not ln.startswith("#"))
    assert got.stdout.strip() == first_line.strip() == readme_commands()[1]


def test_readme_links_lead_to_files_in_the_repository() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


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
