"""Requirement lines (one packaging-based parser for the exporter and the server), the table
of import/distribution name differences, and how named distributions account for imports."""
from __future__ import annotations

import importlib.metadata as metadata

from blankly_magics.export.distributions import top_level_modules
from blankly_magics.export.known_imports import IMPORT_TO_DISTRIBUTIONS
from blankly_magics.export.pip import pip_requirements
from blankly_magics.export.requirements import as_distribution, provides, resolve_requirements
from blankly_magics.export.result import ImportRef
from blankly_magics.requirement_lines import (
    canonical_name,
    parse_requirement,
    read_requirement_lines,
    requirement_lines,
    requirement_name,
)

REQUIREMENTS_TXT = """# the model's requirements
blankly==1.18.25b0
numpy<2  # blankly needs numpy 1
--extra-index-url https://example.org/simple
ta==0.10.2 \\
    ; python_version > "3"
git+https://example.org/repo.git#egg=Signals_Lib
"""


def test_requirement_lines_of_a_requirements_text_keep_options_and_drop_comments():
    assert requirement_lines(REQUIREMENTS_TXT) == [
        "blankly==1.18.25b0",
        "numpy<2",
        "--extra-index-url https://example.org/simple",
        'ta==0.10.2      ; python_version > "3"',
        "git+https://example.org/repo.git#egg=Signals_Lib",
    ]


def test_names_are_read_by_packaging_and_compared_in_canonical_form():
    names = [requirement_name(line) for line in requirement_lines(REQUIREMENTS_TXT)]
    assert names == ["blankly", "numpy", None, "ta", "signals-lib"]
    assert str(parse_requirement("PyYAML[extra]>=6 ; python_version>'3'").specifier) == ">=6"
    assert canonical_name("Python_Dateutil") == canonical_name("python.dateutil") == "python-dateutil"
    assert parse_requirement("./local/pkg") is None and parse_requirement("-e .") is None


def test_a_line_pip_would_refuse_is_a_problem_naming_file_and_line(tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("pandas>=2\nnot a requirement!\n")
    lines, problems = read_requirement_lines(reqs)
    assert lines == ["pandas>=2", "not a requirement!"]
    assert len(problems) == 1
    assert problems[0].startswith(f"requirements file {reqs}: `not a requirement!` is not a valid requirement (")


def test_pip_install_lines_leave_local_paths_out():
    reqs, skipped = pip_requirements("!pip install ./vendor/lib ta dist/pkg-1.0-py3-none-any.whl ~/src/x")
    assert reqs == ["ta"]
    assert skipped == ["./vendor/lib", "dist/pkg-1.0-py3-none-any.whl", "~/src/x"]


def test_the_name_table_agrees_with_the_installed_metadata():
    checked = set()
    for module, dists in IMPORT_TO_DISTRIBUTIONS.items():
        for dist in filter(_installed, dists):
            assert module in top_level_modules(metadata.distribution(dist)), f"{dist} does not ship `{module}`"
            checked.add(module)
    # the test tools bring these (PyYAML, and pandas's python-dateutil) wherever the suite runs
    assert {"yaml", "dateutil"} <= checked, checked


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_the_name_table_lists_only_real_differences():
    for module, dists in IMPORT_TO_DISTRIBUTIONS.items():
        assert dists and len(set(map(canonical_name, dists))) == len(dists)
        assert any(canonical_name(d) != canonical_name(module) for d in dists), module


def test_an_import_name_given_as_a_requirement_becomes_its_distribution():
    assert as_distribution("sklearn==1.5.0") == (
        "scikit-learn==1.5.0",
        "`sklearn==1.5.0` (the requirements) names the import `sklearn`, not a distribution: requirements.txt says `scikit-learn==1.5.0`",
    )
    assert as_distribution("PIL")[0] == "Pillow"
    assert as_distribution("scikit-learn") == ("scikit-learn", None)
    assert as_distribution("tulipy") == ("tulipy", None)  # a distribution of that name provides it
    assert as_distribution("--index-url https://x") == ("--index-url https://x", None)


def test_a_named_distribution_provides_its_modules():
    assert provides("pyyaml", "yaml")  # installed here: its own metadata says so
    assert not provides("pyyaml", "dateutil")
    assert provides("scikit-learn", "sklearn") and provides("opencv-python-headless", "cv2")  # the table
    assert provides("pandas-ta", "pandas_ta") and provides("python-foo", "foo")  # by name
    assert not provides("scikit-learn", "cv2")


def imports(*modules: str, deferred: bool = False) -> list[ImportRef]:
    return [ImportRef(m, False, f"cell {i + 1}, line 1", deferred) for i, m in enumerate(modules)]


def test_imports_not_installed_are_accounted_for_by_the_names_given():
    reqs = resolve_requirements(
        imports("sklearn.linear_model", "pypfopt"),
        user_lines=["scikit-learn==1.5.0"],
        notebook_lines=[("PyPortfolioOpt", "cell 1, line 1")],
    )
    assert reqs.problems == []
    assert {"scikit-learn==1.5.0", "PyPortfolioOpt"} <= set(reqs.lines)
    assert "cell 1, line 1: `sklearn` is not installed here; `scikit-learn==1.5.0` (the requirements) provides it" \
        in reqs.notes


def test_unaccounted_imports_are_assumed_provided_by_unaccounted_names_or_refused():
    assumed = resolve_requirements(imports("acmesignals"), user_lines=["acme-quant-signals"])
    assert assumed.problems == []
    assert assumed.notes[0] == (
        "`acme-quant-signals` (named in the requirements, not installed here) assumed to provide "
        "`acmesignals` (cell 1, line 1)"
    )
    # scikit-learn's modules are known, and it provides none of these: nothing to assume
    refused = resolve_requirements(imports("acmesignals", "pypfopt"), user_lines=["scikit-learn"])
    assert refused.problems[1] == (
        "cell 2, line 1: module `pypfopt` is imported but no installed distribution provides it; install it here, "
        "or name its distribution PyPortfolioOpt in the requirements (`!pip install PyPortfolioOpt` in a cell, "
        "or --requirements FILE)"
    )


def test_imports_inside_functions_of_local_modules_are_only_noted():
    reqs = resolve_requirements(imports("yfinance", "quandl_missing_x", deferred=True))
    assert reqs.problems == []
    assert reqs.notes[0] == (
        "imported inside functions of local modules and not installed here: yfinance (cell 1, line 1), "
        "quandl_missing_x (cell 2, line 1); add them to the requirements if the model calls them"
    )
