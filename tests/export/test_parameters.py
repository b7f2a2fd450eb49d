"""The parameters cell: taken into the script, its defaults read, a run's overrides applied right after it."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from blankly_magics.export import BuildError, build_bundle
from tests.fixtures_notebooks import write_notebook

USES = "#| blankly\nprint('low', low, 'symbol', symbol, 'sizes', sizes)\n"


def _script_output(tmp_path, bundle, overrides=None) -> subprocess.CompletedProcess:
    script = tmp_path / "bot.py"
    script.write_text(bundle.script)
    env = {k: v for k, v in os.environ.items() if k != "BLANKLY_PARAMETERS"}
    if overrides is not None:
        env["BLANKLY_PARAMETERS"] = base64.b64encode(json.dumps(overrides).encode()).decode()
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("cell", [
    "#| blankly: parameters\nlow = 30\nsymbol = 'GOOG-USD'\nsizes: list = [1, 2.5]\n",
    {"source": "low = 30\nsymbol = 'GOOG-USD'\nsizes: list = [1, 2.5]\n", "tags": ["parameters"]},
])
def test_the_parameters_cell_runs_by_hand_with_its_defaults_and_with_a_runs_overrides(tmp_path, cell):
    nb = write_notebook(tmp_path / "p.ipynb", ["#| blankly\nimport math\n", cell, USES])
    bundle = build_bundle(nb)
    assert bundle.parameters == {"low": 30, "symbol": "GOOG-USD", "sizes": [1, 2.5]}
    assert bundle.manifest["parameters"] == bundle.parameters
    assert bundle.parameters_cell == "cell 2 (`low = 30`)"
    assert "Parameters, from cell 2 (`low = 30`): low=30, symbol='GOOG-USD', sizes=[1, 2.5]" in bundle.summary()
    # the overrides come right after the parameters cell, before the code that uses them
    script = bundle.script
    assert script.index("low = 30") < script.index("BLANKLY_PARAMETERS") < script.index("print('low'")

    by_hand = _script_output(tmp_path, bundle)
    assert by_hand.returncode == 0, by_hand.stderr
    assert by_hand.stdout == "low 30 symbol GOOG-USD sizes [1, 2.5]\n"
    overridden = _script_output(tmp_path, bundle, {"low": 25, "symbol": "BTC-USD"})
    assert overridden.stdout == "low 25 symbol BTC-USD sizes [1, 2.5]\n"
    unknown = _script_output(tmp_path, bundle, {"lowx": 1})
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "BLANKLY_PARAMETERS names lowx, which the parameters cell does not assign"


def test_the_parameters_cell_is_taken_when_nothing_else_is_marked_and_skip_wins(tmp_path):
    every = write_notebook(tmp_path / "a.ipynb", [{"source": "low = 30\nsymbol = 'x'\nsizes = []\n",
                                                    "tags": ["parameters"]}, USES.replace("#| blankly\n", "")])
    bundle = build_bundle(every)
    assert bundle.selection == "all" and bundle.parameters == {"low": 30, "symbol": "x", "sizes": []}
    skipped = write_notebook(tmp_path / "b.ipynb", ["#| blankly: skip\n#| blankly: parameters\nlow = 1\n",
                                                     "#| blankly\nprint(1)\n"])
    bundle = build_bundle(skipped)
    assert bundle.parameters_cell is None and "parameters" not in bundle.manifest
    assert "BLANKLY_PARAMETERS" not in bundle.script


def test_a_notebook_without_a_parameters_cell_keeps_no_parameters_from_an_old_blankly_json(tmp_path):
    (tmp_path / "blankly.json").write_text(json.dumps({"parameters": {"low": 1}}))
    nb = write_notebook(tmp_path / "c.ipynb", ["#| blankly\nprint(1)\n"])
    bundle = build_bundle(nb)
    assert bundle.parameters == {} and "parameters" not in bundle.manifest


@pytest.mark.parametrize("source, problem", [
    ("low = 30\nwindow = compute()\n", "cell 1 (`low = 30`), line 2: the value of `window` is not a literal"),
    ("low = 30\nprint(low)\n", "cell 1 (`low = 30`), line 2: `print(low)` is not a plain assignment"),
    ("low = high = 30\n", "cell 1 (`low = high = 30`), line 1: `low = high = 30` is not a plain assignment"),
    ("levels = {1, 2}\n", "line 1: the value of `levels` is not a literal"),
])
def test_a_parameters_cell_holds_only_assignments_of_literals(tmp_path, source, problem):
    nb = write_notebook(tmp_path / "d.ipynb", [{"source": source, "tags": ["parameters"]}, "compute = len\n"])
    with pytest.raises(BuildError) as info:
        build_bundle(nb)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_two_parameters_cells_are_refused_naming_both(tmp_path):
    nb = write_notebook(tmp_path / "e.ipynb", ["#| blankly: parameters\nlow = 1\n",
                                               {"source": "high = 2\n", "tags": ["parameters"]}])
    with pytest.raises(BuildError) as info:
        build_bundle(nb)
    assert ("2 cells are marked as the parameters cell (cell 1 (`low = 1`), cell 2 (`high = 2`)); mark one: "
            "a run's overrides are applied right after it") in info.value.problems
