"""blankly.json, settings files and requirements inferred from the installed environment."""
from __future__ import annotations

import importlib.metadata as metadata
import json
import sys

import pytest

from blankly_magics import requirement_lines as rl
from blankly_magics.export import distributions, manifest as mf
from blankly_magics.export.requirements import resolve_requirements
from blankly_magics.export.result import ImportRef
from blankly_magics.modelzip import DEFAULT_DEPLOY_SETTINGS
from tests.fixtures_notebooks import BLANKLY_PIN


@pytest.mark.blankly
def test_embedded_defaults_match_the_installed_blankly():
    from blankly.utils import utils

    assert mf.DEFAULT_GENERAL_SETTINGS == utils.default_general_settings
    assert mf.DEFAULT_BACKTEST_SETTINGS == utils.default_backtest_settings
    assert DEFAULT_DEPLOY_SETTINGS == utils.default_deploy_settings


def test_written_backtest_settings_are_headless_and_otherwise_blanklys():
    written = json.loads(mf.default_backtest_bytes())
    assert written["settings"]["GUI_output"] is False
    written["settings"]["GUI_output"] = True
    assert written == mf.DEFAULT_BACKTEST_SETTINGS
    assert json.loads(mf.default_settings_bytes()) == mf.DEFAULT_GENERAL_SETTINGS


def test_headless_backtest_settings_forces_gui_output_off_only_when_needed():
    fixed, changed = mf.headless_backtest_settings({"settings": {"GUI_output": True, "use_price": "open"}})
    assert changed and fixed == {"settings": {"GUI_output": False, "use_price": "open"}}
    same, changed = mf.headless_backtest_settings(fixed)
    assert not changed and same is fixed


def test_blankly_json_has_blanklys_keys_our_values_and_no_secrets():
    data = mf.blankly_json(
        main_script="bot.py",
        python_version="3.10",
        backtest_args={"to": "2y"},
        model_id="m1",
        project_id="p1",
        user={"api_key": "k", "api_pass": "p", "ignore_files": ["data/raw"], "main_script": "./other.py", "plan": "small"},
    )
    assert data == {
        "main_script": "./bot.py",
        "python_version": "3.10",
        "requirements": "./requirements.txt",
        "working_directory": ".",
        "ignore_files": ["data/raw"],
        "backtest_args": {"to": "2y"},
        "screener": {"schedule": "30 14 * * 1-5"},
        "plan": "small",
        "type": "strategy",
        "model_id": "m1",
        "project_id": "p1",
    }
    screener = mf.blankly_json(main_script="bot.py", python_version="3.11", model_type="screener", schedule="0 * * * *")
    assert screener["type"] == "screener" and screener["screener"] == {"schedule": "0 * * * *"}
    assert screener["backtest_args"] == {"to": "1y"}
    assert "model_id" not in screener


def test_running_python_is_major_minor():
    assert mf.running_python() == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_a_model_asks_for_this_python_or_the_newest_blankly_installs_on():
    python, note = mf.default_python()
    if sys.version_info[:2] <= (3, 11):
        assert (python, note) == (mf.running_python(), None)
    else:
        assert python == "3.11"
        assert note.startswith(f"blankly.json says python_version 3.11, not this interpreter's {mf.running_python()}")


@pytest.mark.parametrize(
    "content, secret",
    [
        ({"alpaca": {"example-portfolio": {"API_KEY": "*" * 20, "API_SECRET": "*" * 20, "sandbox": False}}}, False),
        ({"alpaca": {"live": {"API_KEY": "PK7Q2M9Z4R8T1W6Y3B5N", "API_SECRET": "*" * 20, "sandbox": True}}}, True),
        ({}, False),
    ],
)
def test_keys_json_placeholders_are_not_secrets_but_real_values_are(content, secret):
    assert mf.keys_json_has_secrets(json.dumps(content).encode()) is secret


def test_unreadable_keys_json_counts_as_secret():
    assert mf.keys_json_has_secrets(b"{not json") is True


# ----------------------------------------------------------------- requirements


def imports(*modules, optional=False):
    return [ImportRef(m, optional, f"cell {i}, line 1") for i, m in enumerate(modules)]


def test_import_names_map_to_installed_distributions_and_are_pinned():
    reqs = resolve_requirements(imports("yaml", "dateutil.parser", "blankly"))
    expected = {
        "PyYAML==" + metadata.version("PyYAML"),
        "python-dateutil==" + metadata.version("python-dateutil"),
        BLANKLY_PIN,
        "numpy<2",
    }
    assert set(reqs.lines) == expected
    assert reqs.problems == []


def test_stdlib_and_local_modules_are_left_out_but_blankly_is_always_there():
    reqs = resolve_requirements(imports("os", "json", "__future__", "collections.abc", "helpers"), local_modules={"helpers"})
    assert reqs.lines == [BLANKLY_PIN, "numpy<2"]


@pytest.mark.blankly
def test_imported_numpy_is_pinned_to_the_installed_version_below_2():
    version = metadata.version("numpy")
    assert int(version.split(".")[0]) < 2  # this environment runs blankly
    reqs = resolve_requirements(imports("numpy"))
    assert f"numpy=={version}" in reqs.lines and "numpy<2" not in reqs.lines


def test_an_import_nothing_provides_is_a_problem_naming_where():
    reqs = resolve_requirements(imports("os", "surely_not_installed_mod"))
    assert reqs.problems == [
        "cell 1, line 1: module `surely_not_installed_mod` is imported but no installed distribution provides it; "
        "install it here, or name its distribution in the requirements "
        "(a `!pip install` line in a cell, or --requirements FILE)"
    ]


def test_unresolved_import_is_fine_when_the_requirements_name_it_or_it_is_optional():
    named = resolve_requirements(imports("surely_not_installed_mod"), user_lines=["surely-not-installed-mod>=1"])
    assert named.problems == [] and "surely-not-installed-mod>=1" in named.lines
    from_pip = resolve_requirements(imports("ta"), notebook_lines=[("ta==0.10.2", "cell 0, line 1")])
    assert from_pip.problems == [] and "ta==0.10.2" in from_pip.lines
    optional = resolve_requirements(imports("surely_not_installed_mod", optional=True))
    assert optional.problems == [] and any("optional import" in n for n in optional.notes)


def test_user_requirements_win_per_normalised_name():
    reqs = resolve_requirements(
        imports("yaml", "blankly"),
        user_lines=["pyyaml==5.4.1", "Blankly>=1.18", "--extra-index-url https://example.org/simple", "numpy==1.26.4"],
    )
    assert reqs.lines == ["--extra-index-url https://example.org/simple", "Blankly>=1.18", "numpy==1.26.4", "pyyaml==5.4.1"]


def test_notebook_pip_lines_are_pinned_when_installed_and_kept_when_specific():
    reqs = resolve_requirements(
        imports(),
        notebook_lines=[("PyYAML", "cell 0, line 1"), ("requests>=2", "cell 0, line 2")],
    )
    assert "PyYAML==" + metadata.version("PyYAML") in reqs.lines
    assert "requests>=2" in reqs.lines


def test_requirement_files_are_read_with_comments_continuations_and_nested_files(tmp_path):
    (tmp_path / "base.txt").write_text("pandas>=2  # data\n")
    main = tmp_path / "requirements.txt"
    main.write_text("# top\n-r base.txt\n\nta==0.10.2 \\\n  ; python_version>'3'\n")
    lines, problems = rl.read_requirement_lines(main)
    assert problems == []
    assert lines == ["pandas>=2", "ta==0.10.2    ; python_version>'3'"]
    missing, problems = rl.read_requirement_lines(tmp_path / "nope.txt")
    assert missing == [] and problems == [f"requirements file {tmp_path / 'nope.txt'} does not exist"]


def test_normalize_name_follows_pep_503():
    assert rl.canonical_name("Python_Dateutil") == rl.canonical_name("python.dateutil") == "python-dateutil"
    assert rl.requirement_name("PyYAML[extra]>=6 ; python_version>'3'") == "pyyaml"
    assert rl.requirement_name("git+https://host/repo.git#egg=My_Pkg") == "my-pkg"
    assert rl.requirement_name("--index-url https://x") is None


def test_distributions_for_uses_the_installed_metadata():
    assert distributions.distributions_for("yaml") == ["PyYAML"]
    assert distributions.distributions_for("dateutil.tz") == ["python-dateutil"]
    assert distributions.distributions_for("surely_not_installed_mod") == []
    assert distributions.is_stdlib("asyncio.tasks") and not distributions.is_stdlib("yaml")
