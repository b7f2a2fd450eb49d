"""`python -m blankly_magics build ...`: summary on success, exit 2 and nothing written on error."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

from blankly_magics.cli import main
from blankly_magics.server.zipcheck import inspect_model_zip
from tests.fixtures_notebooks import RSI_ENTRY, write_notebook


def test_build_writes_the_zip_and_prints_the_summary(rsi_notebook, tmp_path, capsys):
    entry = tmp_path / "entry.py"
    entry.write_text(RSI_ENTRY)
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("ta==0.10.2\n")
    (rsi_notebook.parent / "notes.md").write_text("# notes\n")
    out = tmp_path / "dist" / "model.zip"
    code = main(
        [
            "build", str(rsi_notebook), "--output", str(out), "--entry", str(entry),
            "--include", "notes.md", "--requirements", str(reqs), "--python", "3.10",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.err == ""
    assert "Model from rsi.ipynb: 3 cell(s) taken (marked)" in printed.out
    assert f"Wrote {out} (" in printed.out and "sha256 " in printed.out
    info = inspect_model_zip(out)
    assert info.manifest["python_version"] == "3.10"
    with zipfile.ZipFile(out) as zf:
        assert "model/notes.md" in zf.namelist()
        assert "ta==0.10.2" in zf.read("model/requirements.txt").decode().splitlines()
        assert 'if __name__ == "__main__":' in zf.read("model/bot.py").decode()


def test_a_problem_exits_2_names_the_cell_and_writes_nothing(tmp_path, capsys):
    nb = write_notebook(tmp_path / "bad.ipynb", ["LIMIT = 3", "#| blankly\nprint(LIMIT)"])
    out = tmp_path / "model.zip"
    out.write_bytes(b"previous build")
    code = main(["build", str(nb), "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 2
    assert printed.out == ""
    assert printed.err.startswith("error: cannot build the model: ") and printed.err.count("\n") == 1  # one line
    assert "cell 2 (`print(LIMIT)`), line 2: `LIMIT` is not defined" in printed.err
    assert "defined in cell 1 (`LIMIT = 3`)" in printed.err and "(id " not in printed.err
    assert out.read_bytes() == b"previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ipynb", "model.zip"]


def test_syntax_error_exit_code_and_message(tmp_path, capsys):
    nb = write_notebook(tmp_path / "syn.ipynb", ["#| blankly\nx = (1,\ny = 2"])
    assert main(["build", str(nb), "-o", str(tmp_path / "m.zip")]) == 2
    err = capsys.readouterr().err
    assert "cell 1 (`x = (1,`), line 2: syntax error" in err
    assert not (tmp_path / "m.zip").exists()


def test_bad_input_files_and_options_exit_2(tmp_path, capsys):
    assert main(["build", str(tmp_path / "missing.ipynb"), "-o", str(tmp_path / "m.zip")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    nb = write_notebook(tmp_path / "ok.ipynb", ["print(1)"])
    assert main(["build", str(nb), "-o", str(tmp_path / "m.zip"), "--requirements", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt does not exist" in capsys.readouterr().err
    assert main(["build", str(nb), "-o", str(tmp_path / "m.zip"), "--cells", "one"]) == 2
    assert "--cells takes comma-separated cell numbers" in capsys.readouterr().err
    assert main(["build", str(nb)]) == 2  # --output is required
    assert "--output" in capsys.readouterr().err
    assert main([]) == 2
    assert not (tmp_path / "m.zip").exists()


def test_help_explains_every_option(capsys):
    assert main(["build", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--output", "--entry", "--include", "--requirements", "--python", "--allow-keys",
                   "--base-dir", "--cells", "--type", "--schedule", "--backtest-args"):
        assert option in text
    assert "%%blankly_deploy" in text


def test_cells_and_backtest_args_options(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", ["a = 1", "#| blankly\nb = 2", "print(a)"])
    out = tmp_path / "m.zip"
    assert main(["build", str(nb), "-o", str(out), "--cells", "1,3", "--backtest-args", '{"to": "2y"}']) == 0
    with zipfile.ZipFile(out) as zf:
        script = zf.read("model/bot.py").decode()
        manifest = json.loads(zf.read("model/blankly.json"))
    assert "# %% [cell 1," in script and "# %% [cell 3," in script and "# %% [cell 2," not in script
    assert manifest["backtest_args"] == {"to": "2y"}


def test_python_dash_m_runs_the_same_cli(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", ["#| blankly\nimport json\nprint(json.dumps({}))"])
    out = tmp_path / "m.zip"
    proc = subprocess.run(
        [sys.executable, "-m", "blankly_magics", "build", str(nb), "--output", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Model from nb.ipynb" in proc.stdout
    assert inspect_model_zip(out).main_script == "bot.py"
    bad = subprocess.run(
        [sys.executable, "-m", "blankly_magics", "build", str(tmp_path / "none.ipynb"), "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "no such notebook" in bad.stderr
