"""Choosing a model's interpreter and building cached venvs (real venvs, real pip)."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from blankly_magics.server.runner import envs

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_versions_are_normalized_to_major_minor() -> None:
    assert envs.normalize_version("3.10.4") == "3.10"
    assert envs.normalize_version("python3.9") == "3.9"
    assert envs.normalize_version(" 3.11 ") == "3.11"
    assert envs.normalize_version("") == HERE
    assert envs.normalize_version(None) == HERE
    with pytest.raises(envs.EnvError, match="not of the form X.Y"):
        envs.normalize_version("three")


def test_this_machine_runs_its_own_python() -> None:
    versions = envs.python_versions()
    assert HERE in versions
    assert envs.find_pythons()[HERE] == Path(sys.executable)
    for version, exe in envs.find_pythons().items():
        assert exe.name.startswith("python") and exe.exists(), version


def test_requirements_met_here_are_recognised() -> None:
    import psutil

    assert envs.satisfied_here("")
    assert envs.satisfied_here("# just a comment\n\n")
    assert envs.satisfied_here(f"psutil=={psutil.__version__}\npackaging\n")
    assert envs.satisfied_here("psutil>=1  # inline comment\n")
    assert envs.satisfied_here("not-installed-anywhere; python_version < '3'\n")  # marker excludes it
    assert not envs.satisfied_here("psutil<1\n")
    assert not envs.satisfied_here("not-installed-anywhere-xyz\n")
    assert not envs.satisfied_here("-e .\n")  # pip options cannot be judged: build a venv
    assert not envs.satisfied_here("this is not a requirement!!\n")
    assert not envs.satisfied_here("pkg @ https://example.invalid/pkg.whl\n")


def test_the_servers_own_interpreter_is_chosen_when_everything_fits(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("psutil\n")
    chosen = envs.select_python(HERE, req, tmp_path / "envs")
    assert chosen.python == Path(sys.executable) and chosen.shared
    assert not (tmp_path / "envs").exists()  # nothing built


def test_env_keys_depend_on_python_and_requirements() -> None:
    a = envs.env_key("3.11", "six==1.16.0\n")
    assert a == envs.env_key("3.11", "six==1.16.0\n")
    assert a != envs.env_key("3.10", "six==1.16.0\n")
    assert a != envs.env_key("3.11", "six==1.15.0\n")


def test_an_unknown_python_is_refused_with_the_choices(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("")
    with pytest.raises(envs.EnvError, match=r"python 3\.99 is not available .*available: .*" + HERE):
        envs.select_python("3.99", req, tmp_path / "envs")


@pytest.mark.slow
def test_a_venv_is_built_once_and_reused(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    # Not met here (six 1.17 or none is installed), so the model gets its own venv.
    req.write_text("six==1.15.0\n")
    assert not envs.satisfied_here(req.read_text())
    lines: list[str] = []
    # Two runs asking at once build it once (the second waits for the first's lock).
    results: list[envs.Interpreter] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(envs.build_env(tmp_path / "envs", HERE, req.read_text(), envs.Unconfined(log=lines.append)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    assert results[0] == results[1]
    env = results[0]
    assert not env.shared and env.env_dir.parent == tmp_path / "envs" and env.base == envs.find_pythons()[HERE]
    assert env.env_dir.name == envs.env_key(HERE, req.read_text())
    assert sum(1 for line in lines if line.startswith("$ ") and " venv " in line) == 1
    code = "import six, sys; assert six.__version__ == '1.15.0'; print(sys.prefix)"
    out = subprocess.run([str(env.python), "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert Path(out) == env.env_dir  # the renamed venv really is its own prefix
    assert [p.name for p in (tmp_path / "envs").iterdir()] == [env.env_dir.name]  # no temp dir left
    # A later selection finds it in the cache: no pip run.
    again: list[str] = []
    chosen = envs.select_python(HERE, req, tmp_path / "envs", envs.Unconfined(log=again.append))
    assert chosen == env and again == []


@pytest.mark.slow
def test_pip_failure_is_reported_with_pips_message(tmp_path: Path) -> None:
    with pytest.raises(envs.EnvError) as info:
        envs.build_env(tmp_path / "envs", HERE, "six==1.16.0\nsix==1.15.0\n", envs.Unconfined())
    message = str(info.value)
    assert message.startswith("pip install -r requirements.txt failed")
    assert "ResolutionImpossible" in message
    assert list((tmp_path / "envs").iterdir()) == []  # no half-built env left


@pytest.mark.slow
def test_a_stopped_build_is_killed_and_leaves_nothing(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(envs.EnvError, match="stopped while building"):
        envs.build_env(tmp_path / "envs", HERE, "six\n", envs.Unconfined(stop=stop))
    assert list((tmp_path / "envs").iterdir()) == []
