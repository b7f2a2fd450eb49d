"""Notebooks with the shapes of public research notebooks, built as a user builds them:
``python -m blankly_magics build`` in a terminal, and ``%%blankly_deploy --dry-run`` in a
real IPython shell. Each test reads what the user is shown and what the zip holds."""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional

import pytest
from IPython.core.error import UsageError

from blankly_magics.requirement_lines import requirement_name
from tests.magics_shell import TestingShell

ENTRY = 'print("start")'


def build(nb: Path, *options: str) -> subprocess.CompletedProcess:
    """The terminal build, as a user types it, writing model.zip beside the notebook."""
    return subprocess.run(
        [sys.executable, "-m", "blankly_magics", "build", str(nb), "-o", str(nb.parent / "model.zip"), *options],
        capture_output=True, text=True, timeout=120, cwd=nb.parent,
    )


def zipped_requirements(nb: Path) -> list[str]:
    with zipfile.ZipFile(nb.parent / "model.zip") as zf:
        return zf.read("model/requirements.txt").decode().splitlines()


class Shell:
    """A real IPython shell with the extension loaded; runs the deploy cell as a notebook would."""

    def __init__(self, capsys: pytest.CaptureFixture) -> None:
        self.ip = TestingShell.fresh()
        self.ip.run_cell("%load_ext blankly_magics")
        self.capsys = capsys
        capsys.readouterr()

    def dry_run(self, nb: Path, options: str = "") -> tuple[str, object]:
        """(what the cell printed, the bundle it returned)."""
        self.ip.run_cell(f"%%blankly_deploy --dry-run --notebook {nb} {options}\n{ENTRY}")
        return self.capsys.readouterr().out, self.ip.user_ns["_"]

    def refused(self, nb: Path, options: str = "") -> str:
        """The one-line UsageError a refused build shows."""
        with pytest.raises(UsageError) as info:
            self.ip.run_cell(f"%%blankly_deploy --dry-run --notebook {nb} {options}\n{ENTRY}")
        printed = self.capsys.readouterr()
        assert "Traceback" not in printed.out + printed.err
        return str(info.value)


@pytest.fixture
def shell(private_home, capsys) -> Shell:
    return Shell(capsys)


def names(lines: list[str]) -> set[Optional[str]]:
    return {requirement_name(line) for line in lines}


# ------------------------------------------------------------ requirements named by distribution


def test_a_pip_install_line_names_the_distribution_of_its_import(export_notebook, shell):
    nb = export_notebook("pip_install_distribution")
    proc = build(nb)
    assert proc.returncode == 0, proc.stderr
    reqs = zipped_requirements(nb)
    assert "PyPortfolioOpt" in reqs and "pypfopt" not in names(reqs)
    assert re.search(r"`pypfopt` is not installed here; `PyPortfolioOpt` \(cell 2 \(`!pip install PyPortfolioOpt`\), "
                     r"line 1\) provides it",
                     proc.stdout)
    out, bundle = shell.dry_run(nb)
    assert bundle.requirements == reqs
    assert "`pypfopt` is not installed here; `PyPortfolioOpt`" in out


@pytest.mark.parametrize(
    "given, written",
    [
        ("scikit_learn\npython-telegram-bot\nopencv-python\n", ["scikit_learn", "python-telegram-bot", "opencv-python"]),
        ("scikit-learn==1.5.0\npython-telegram-bot\nopencv-python-headless\n",
         ["scikit-learn==1.5.0", "python-telegram-bot", "opencv-python-headless"]),
        ("sklearn\ntelegram\ncv2\n", ["scikit-learn", "python-telegram-bot", "opencv-python"]),
    ],
    ids=["underscore-name", "pinned-and-headless", "import-names"],
)
def test_distributions_named_in_a_requirements_file_provide_their_imports(export_notebook, shell, given, written):
    nb = export_notebook("named_in_requirements")
    reqs_file = nb.parent / "reqs.txt"
    reqs_file.write_text(given)
    proc = build(nb, "--requirements", str(reqs_file))
    assert proc.returncode == 0, proc.stderr
    reqs = zipped_requirements(nb)
    assert set(written) <= set(reqs)
    assert not names(reqs) & {"sklearn", "telegram", "cv2"}  # never a bare module name
    if "sklearn" in given.split():
        assert "`sklearn` (the requirements) names the import `sklearn`, not a distribution: requirements.txt says `scikit-learn`" \
            in proc.stdout
    _, bundle = shell.dry_run(nb, f"--requirements {reqs_file}")
    assert bundle.requirements == reqs


def test_a_named_distribution_nothing_else_accounts_for_is_assumed_and_said(export_notebook, shell):
    nb = export_notebook("assumed_distribution")
    proc = build(nb)
    assert proc.returncode == 0, proc.stderr
    assert "acme-quant-signals==2.1" in zipped_requirements(nb)
    said = re.search(r"`acme-quant-signals==2.1` \(named in the requirements, not installed here\) assumed to "
                     r"provide `acmesignals` \(cell 2 \(`import acmesignals`\), line 1\)", proc.stdout)
    assert said, proc.stdout
    out, _ = shell.dry_run(nb)
    assert "assumed to provide `acmesignals`" in out


# ------------------------------------------------------------ data files and names


def test_a_missing_data_file_is_a_warning_naming_cell_line_and_path(export_notebook, shell):
    nb = export_notebook("missing_data_file")
    proc = build(nb)
    assert proc.returncode == 0, proc.stderr
    warning = re.search(r"cell 2 \(`df = pd.read_csv\(.*`\), line 1: `data/stock_prices.csv` is not in the model "
                        r"folder .*, so the zip will not have it \(fine if the model writes it when it runs\)",
                        proc.stdout)
    assert warning and "Warnings:" in proc.stdout
    with zipfile.ZipFile(nb.parent / "model.zip") as zf:
        assert not [n for n in zf.namelist() if "stock_prices" in n]
    out, _ = shell.dry_run(nb)
    assert "`data/stock_prices.csv` is not in the model folder" in out


def test_an_undefined_name_is_located_where_it_is_used_not_where_a_string_mentions_it(export_notebook, shell):
    nb = export_notebook("undefined_after_mention")
    proc = build(nb)
    assert proc.returncode == 2
    assert "cell 2 (`x = 1`), line 2: `thing` is used but never defined" in proc.stderr
    assert "cell 2 (`x = 1`), line 2: `thing` is used but never defined" in shell.refused(nb)


def test_names_made_at_run_time_are_refused_with_both_ways_through(export_notebook, shell):
    nb = export_notebook("runtime_names")
    proc = build(nb)
    assert proc.returncode == 2
    for name in ("sm", "m"):
        assert f"`{name}` is used but never defined" in proc.stderr
        assert f"write `#| blankly: allow-undefined {name}` in a cell or pass --allow-undefined {name}" in proc.stderr
    assert "`sm` is used" in shell.refused(nb)
    passed = build(nb, "--allow-undefined", "sm", "--allow-undefined", "m")
    assert passed.returncode == 0, passed.stderr
    assert "taken as made at run time: `sm` (--allow-undefined), `m` (--allow-undefined)" in passed.stdout
    out, bundle = shell.dry_run(nb, "--allow-undefined sm --allow-undefined m")
    assert "sm.OLS" in bundle.script and "taken as made at run time" in out


def test_the_allow_undefined_directive_lets_runtime_names_through(export_notebook, shell):
    nb = export_notebook("runtime_names_allowed")
    proc = build(nb)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"taken as made at run time: `sm` \(`#\| blankly: allow-undefined` in cell 2 \(`import math`\)\), `m`",
                     proc.stdout)
    assert {"backtrader", "statsmodels"} <= names(zipped_requirements(nb))
    _, bundle = shell.dry_run(nb)
    assert 'setattr(sys.modules[__name__], "m", math)' in bundle.script


def test_names_only_a_removed_magic_makes_name_that_magic(export_notebook, shell):
    nb = export_notebook("removed_magics")
    proc = build(nb)
    assert proc.returncode == 2
    err = proc.stderr
    assert re.search(r"`figsize` is used but not defined in the exported code; `%pylab inline` \(cell 1 \(`%pylab inline`\), line 1\) "
                     r"may have made it in the notebook, but magics do not run in a script: .*"
                     r"`from matplotlib.pyplot import figure`", err)
    assert re.search(r"`cap` is used but not defined in the exported code; `%%capture cap` \(cell 3 \(`%%capture cap`\), line 1\) "
                     r"makes it in the notebook, but magics do not run in a script", err)
    assert re.search(r"`x` is used but not defined in the exported code; `%store -r x` \(cell 5 \(`%store -r x`\), line 1\) makes "
                     r"it in the notebook, but magics do not run in a script: it reads `x` from IPython's store", err)
    assert "never defined or imported anywhere" not in err
    message = shell.refused(nb)
    assert "`%pylab inline`" in message and "`%%capture cap`" in message and "`%store -r x`" in message


# ------------------------------------------------------------ smaller


def test_a_chosen_cell_magic_cell_is_said_to_be_dropped(export_notebook, shell):
    nb = export_notebook("cell_magic_chosen")
    proc = build(nb, "--cells", "2")
    assert proc.returncode == 2
    assert re.search(r"no cell to export: the chosen cell 2 \(`%%zipline --start 2016-1-1 --end 2018\.\.\.`\) was "
                     r"dropped, because a %%zipline cell magic cannot run in a script; choose cells of plain Python "
                     r"code", proc.stderr)
    assert "mark the strategy cells" not in proc.stderr
    marked = export_notebook("cell_magic_marked")
    assert re.search(r"no cell to export: the marked cell 2 \(`%%zipline --start 2016-1-1 --end 2018\.\.\.`\) was "
                     r"dropped, because a %%zipline cell magic", shell.refused(marked))


def test_imports_inside_functions_of_local_modules_are_a_note(export_notebook, shell):
    nb = export_notebook("local_module/research")
    proc = build(nb)
    assert proc.returncode == 0, proc.stderr
    assert ("imported inside functions of local modules and not installed here: yfinance (helpers.py, line 11); "
            "add them to the requirements if the model calls them") in proc.stdout
    assert "yfinance" not in names(zipped_requirements(nb))
    with zipfile.ZipFile(nb.parent / "model.zip") as zf:
        assert "model/helpers.py" in zf.namelist()
    out, _ = shell.dry_run(nb)
    assert "yfinance (helpers.py, line 11)" in out


def test_with_nothing_marked_the_summary_says_so_once(export_notebook, shell):
    nb = export_notebook("nothing_marked")
    proc = build(nb)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("no cell is marked") == 1
    assert proc.stdout.splitlines()[0] == (
        "Model from nothing_marked.ipynb: 3 cell(s) taken (all); no cell is marked: every code cell is taken"
    )
    out, _ = shell.dry_run(nb)
    assert out.count("no cell is marked") == 1
