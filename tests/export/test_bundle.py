"""The model folder and its zip: files, secrets, requirements, determinism, layout.

Real notebooks, real folders, real zips read back with zipfile and checked with
the server's own acceptance check (zipcheck.inspect_model_zip).
"""
from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from blankly_magics.export import BuildError, build_bundle, cells_from_sources
from blankly_magics.export import collect
from blankly_magics.server.zipcheck import inspect_model_zip
from tests.fixtures_notebooks import BLANKLY_PIN, PRICES_CSV, RSI_ENTRY, write_notebook

REAL_KEY = "PK7Q2M9Z4R8T1W6Y3B5N"
REAL_SECRET = "s3cr3tVa1ueThatIsLongEnough42"


def members(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def simple_notebook(folder: Path, cells=None) -> Path:
    return write_notebook(folder / "nb.ipynb", cells or ["#| blankly\nimport json\nprint(json.dumps([1]))"])


# ----------------------------------------------------------------- layout


def test_rsi_zip_layout_read_back(rsi_notebook, tmp_path):
    b = build_bundle(rsi_notebook, entry=RSI_ENTRY)
    zip_path = b.write_zip(tmp_path / "out" / "model.zip")
    info = inspect_model_zip(zip_path)  # the server's acceptance check
    assert info.main_script == "bot.py" and info.working_directory == "."
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == [
            "model/",
            "model/GOOG-USD-1d.csv",
            "model/backtest.json",
            "model/blankly.json",
            "model/bot.py",
            "model/requirements.txt",
            "model/settings.json",
        ]
        for i in infos:
            assert i.date_time == (1980, 1, 1, 0, 0, 0)
            mode = i.external_attr >> 16
            assert mode == (0o040755 if i.is_dir() else 0o100644)
            assert i.compress_type == (zipfile.ZIP_STORED if i.is_dir() else zipfile.ZIP_DEFLATED)
        assert zf.read("model/bot.py").decode() == b.script
        assert zf.read("model/GOOG-USD-1d.csv") == PRICES_CSV.read_bytes()
        manifest = json.loads(zf.read("model/blankly.json"))
        assert manifest == b.manifest
        assert manifest["main_script"] == "./bot.py" and manifest["type"] == "strategy"
        assert zf.read("model/requirements.txt").decode() == f"{BLANKLY_PIN}\nnumpy<2\n"
        assert json.loads(zf.read("model/backtest.json"))["settings"]["GUI_output"] is False
    assert [(f.path, f.size) for f in b.files] == [(n[len("model/"):], len(members(zip_path)[n])) for n in names[1:]]
    assert b.total_size == sum(f.size for f in b.files)
    assert b.requirements == [BLANKLY_PIN, "numpy<2"]
    assert [c.index for c in b.cells] == [1, 3, 4] and b.selection == "marked"
    assert b.sha256 == hashlib.sha256(zip_path.read_bytes()).hexdigest()


def test_nested_files_get_directory_entries(tmp_path):
    (tmp_path / "data" / "daily").mkdir(parents=True)
    (tmp_path / "data" / "daily" / "a.csv").write_text("time,close\n")
    b = build_bundle(simple_notebook(tmp_path), include=["data"])
    names = list(members(b.write_zip(tmp_path / "m.zip")))
    assert "model/data/" in names and "model/data/daily/" in names and "model/data/daily/a.csv" in names
    assert names == sorted(names)


# ----------------------------------------------------------------- determinism


def test_same_inputs_give_the_same_bytes_even_with_new_mtimes(rsi_notebook, tmp_path):
    first = build_bundle(rsi_notebook, entry=RSI_ENTRY).zip_bytes()
    second = build_bundle(rsi_notebook, entry=RSI_ENTRY).zip_bytes()
    assert first == second
    csv = rsi_notebook.parent / "GOOG-USD-1d.csv"
    os.utime(csv, (1_000_000_000, 1_000_000_000))
    third = build_bundle(rsi_notebook, entry=RSI_ENTRY)
    assert third.zip_bytes() == first
    written = third.write_zip(tmp_path / "again.zip")
    assert written.read_bytes() == first
    changed = build_bundle(rsi_notebook, entry=RSI_ENTRY.replace("10000", "20000"))
    assert changed.sha256 != third.sha256


# ----------------------------------------------------------------- writing


def test_write_zip_is_atomic_and_keeps_the_old_zip_when_it_fails(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "data.csv").write_text("a\n1\n")
    nb = simple_notebook(folder)
    out = tmp_path / "model.zip"
    build_bundle(nb, include=["data.csv"]).write_zip(out)
    before = out.read_bytes()
    broken = build_bundle(nb, include=["data.csv"])
    (folder / "data.csv").unlink()  # vanishes between build and write
    with pytest.raises(BuildError, match="data.csv cannot be read any more"):
        broken.write_zip(out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip", "proj"]  # no temp file left


def test_large_included_files_are_streamed_not_loaded(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        for _ in range(16):
            fh.write(os.urandom(1 << 20))
    b = build_bundle(simple_notebook(tmp_path), include=["big.bin"])
    tracemalloc.start()
    try:
        b.write_zip(tmp_path / "model.zip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 << 20, f"writing a 16 MB file peaked at {peak} bytes of Python memory"
    with zipfile.ZipFile(tmp_path / "model.zip") as zf:
        assert zf.getinfo("model/big.bin").file_size == 16 << 20
        assert zf.testzip() is None


# ----------------------------------------------------------------- files


def test_folder_include_leaves_out_junk_at_any_depth(tmp_path):
    proj = tmp_path
    files = [
        "lib/util.py",
        "lib/.git/config",
        "lib/__pycache__/util.cpython-311.pyc",
        "lib/sub/.ipynb_checkpoints/x-checkpoint.py",
        "lib/price_caches/GOOG.csv",
        "lib/sub/stale.pyc",
        "lib/sub/.DS_Store",
        "lib/sub/keep.txt",
        "lib/venv/pyvenv.cfg",
        "lib/venv/lib/site.py",
        "lib/raw/huge.csv",
        "lib/notes.tmp",
        "lib/git/kept.txt",
    ]
    for rel in files:
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text("x = 1\n")
    (proj / "blankly.json").write_text(json.dumps({"ignore_files": ["./raw", "*.tmp", ".git"]}))
    b = build_bundle(simple_notebook(proj), include=["lib"])
    paths = [f.path for f in b.files]
    assert [p for p in paths if p.startswith("lib/")] == ["lib/git/kept.txt", "lib/sub/keep.txt", "lib/util.py"]
    assert any("lib/venv/: a Python environment" in n for n in b.notes)
    assert b.manifest["ignore_files"] == ["./raw", "*.tmp", ".git"]


def test_symlinks_out_of_the_folder_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("private")
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "ok.csv").write_text("a\n")
    (proj / "data" / "link.txt").symlink_to(outside / "secret.txt")
    (proj / "data" / "inner.csv").symlink_to(proj / "data" / "ok.csv")
    b = build_bundle(simple_notebook(proj), include=["data"])
    assert [f.path for f in b.files if f.path.startswith("data/")] == ["data/inner.csv", "data/ok.csv"]
    assert any("data/link.txt" in w and "outside the model folder" in w for w in b.warnings)
    with pytest.raises(BuildError) as err:
        build_bundle(simple_notebook(proj), include=[str(outside / "secret.txt"), "missing.csv"])
    assert any("outside the model folder" in p for p in err.value.problems)
    assert any("`missing.csv` does not exist" in p for p in err.value.problems)


def test_earlier_model_zips_in_the_folder_are_left_out(tmp_path):
    nb = simple_notebook(tmp_path)
    build_bundle(nb).write_zip(tmp_path / "model.zip")
    b = build_bundle(nb, include=["."])
    assert "model.zip" not in [f.path for f in b.files]
    assert "nb.ipynb" in [f.path for f in b.files]
    assert any("model.zip: a model zip" in n for n in b.notes)


def test_data_files_named_in_the_code_are_included(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(PRICES_CSV, proj / "GOOG-USD-1d.csv")
    (proj / "big.csv").write_text("x" * 10_000)  # 34 KB + 10 KB > the 40 KB allowed below
    (tmp_path / "abs.csv").write_text("a\n")
    cells = [
        "#| blankly\nimport pandas as pd\nprices = pd.read_csv('./GOOG-USD-1d.csv')",
        f"#| blankly\nother = pd.read_csv('big.csv')\nabsolute = '{tmp_path / 'abs.csv'}'",
    ]
    monkeypatch.setattr(collect, "AUTO_INCLUDE_LIMIT", 40_000)
    b = build_bundle(simple_notebook(proj, cells))
    assert "GOOG-USD-1d.csv" in [f.path for f in b.files]
    assert "big.csv" not in [f.path for f in b.files]
    assert "included GOOG-USD-1d.csv: cell 1 (`import pandas as pd`), line 3 names it" in b.notes
    assert any("`big.csv`" in w and "not included automatically" in w for w in b.warnings)
    assert any(f"`{tmp_path / 'abs.csv'}` is an absolute path" in w for w in b.warnings)
    assert "pandas==" + metadata.version("pandas") in b.requirements


def test_only_missing_data_files_are_warned_about(tmp_path):
    cells = ["#| blankly\nimport logging\nlog = logging.getLogger('blankly.strategy')\nprices = 'prices/GOOG.csv'"]
    b = build_bundle(simple_notebook(tmp_path, cells))
    assert len(b.warnings) == 1
    assert "line 4: `prices/GOOG.csv` is not in the model folder" in b.warnings[0]


def test_local_modules_are_included_and_their_imports_required(tmp_path):
    (tmp_path / "helpers.py").write_text("import yaml\nimport os\n\ndef load():\n    return yaml.safe_load('a: 1')\n")
    (tmp_path / "signals").mkdir()
    (tmp_path / "signals" / "__init__.py").write_text("from dateutil import parser\n")
    nb = simple_notebook(tmp_path, ["#| blankly\nimport helpers\nimport signals\nprint(helpers.load())"])
    b = build_bundle(nb)
    paths = [f.path for f in b.files]
    assert "helpers.py" in paths and "signals/__init__.py" in paths
    assert "PyYAML==" + metadata.version("PyYAML") in b.requirements
    assert "python-dateutil==" + metadata.version("python-dateutil") in b.requirements
    assert not any(r.startswith(("helpers", "signals")) for r in b.requirements)
    (tmp_path / "helpers.py").write_text("import surely_not_installed_mod\n")
    with pytest.raises(BuildError) as err:
        build_bundle(nb)
    assert err.value.problems == [
        "helpers.py, line 1: module `surely_not_installed_mod` is imported but no installed distribution "
        "provides it; install it here, or name its distribution in the requirements "
        "(a `!pip install` line in a cell, or --requirements FILE)"
    ]


def test_a_bot_py_in_the_folder_renames_the_generated_script(tmp_path):
    (tmp_path / "bot.py").write_text("print('old bot')\n")
    b = build_bundle(simple_notebook(tmp_path), include=["bot.py"])
    assert b.main_script == "blankly_main.py" and b.manifest["main_script"] == "./blankly_main.py"
    out = b.write_zip(tmp_path / "m.zip")
    assert inspect_model_zip(out).main_script == "blankly_main.py"
    assert members(out)["model/bot.py"] == b"print('old bot')\n"


# ----------------------------------------------------------------- secrets


def real_keys() -> dict:
    return {"alpaca": {"live": {"API_KEY": REAL_KEY, "API_SECRET": REAL_SECRET, "sandbox": False}}}


def test_keys_json_with_real_keys_is_left_out_unless_allowed(tmp_path):
    (tmp_path / "keys.json").write_text(json.dumps(real_keys()))
    nb = simple_notebook(tmp_path)
    b = build_bundle(nb)
    assert "keys.json" not in [f.path for f in b.files]
    assert any("left out keys.json: it holds real-looking exchange keys; `%blankly keys import keys.json` "
               "(`blankly-magics keys import keys.json` in a terminal) stores them on the server" in n
               and "--allow-keys" in n for n in b.notes)
    shown = b.summary() + repr(b) + json.dumps(b.manifest)
    assert REAL_KEY not in shown and REAL_SECRET not in shown
    assert REAL_SECRET.encode() not in b.zip_bytes()
    allowed = build_bundle(nb, allow_keys=True)
    assert "keys.json" in [f.path for f in allowed.files]
    assert any("keys.json is included with its secrets because allow_keys is set: they become part of an "
               "immutable version" in w and "`%blankly keys import keys.json`" in w for w in allowed.warnings)
    assert REAL_SECRET not in allowed.summary()


def test_a_model_importing_blankly_magics_requires_it_editable_install_included(tmp_path):
    version = metadata.version("blankly_magics")
    nb = simple_notebook(tmp_path, ["#| blankly\nimport blankly\nfrom blankly_magics.replay import ReplayExchange\n"])
    b = build_bundle(nb, entry="print(ReplayExchange)")
    assert f"blankly_magics=={version}" in b.requirements  # found by where the module is imported from
    assert not any("blankly_magics" in w for w in b.warnings)  # the local server has it: a note, not a warning
    if metadata.distribution("blankly_magics").read_text("direct_url.json"):  # this test environment's install
        assert any(n.startswith(f"blankly_magics=={version} required (installed here from file:") for n in b.notes)


def test_placeholder_keys_json_is_included(tmp_path):
    keys = {"alpaca": {"example-portfolio": {"API_KEY": "*" * 20, "API_SECRET": "*" * 20, "sandbox": False}}}
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    b = build_bundle(simple_notebook(tmp_path))
    assert "keys.json" in [f.path for f in b.files]


def test_user_blankly_json_credentials_never_reach_the_zip(tmp_path):
    (tmp_path / "blankly.json").write_text(
        json.dumps({"api_key": REAL_KEY, "api_pass": REAL_SECRET, "model_id": "m-7", "backtest_args": {"to": "3y"}})
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "blankly.json").write_text(json.dumps({"api_pass": REAL_SECRET}))
    b = build_bundle(simple_notebook(tmp_path), include=["sub"])
    assert b.manifest["model_id"] == "m-7" and b.manifest["backtest_args"] == {"to": "3y"}
    assert "api_key" not in b.manifest and "api_pass" not in b.manifest
    assert any("blankly.json: api_key, api_pass left out" in n for n in b.notes)
    assert any("left out sub/blankly.json" in n for n in b.notes)
    data = b.zip_bytes()
    assert REAL_KEY.encode() not in data and REAL_SECRET.encode() not in data


def test_secret_literal_in_code_is_a_warning_without_the_value(tmp_path):
    b = build_bundle(simple_notebook(tmp_path, [f"#| blankly\nALPACA_API_KEY = '{REAL_KEY}'"]))
    assert b.warnings == [
        "cell 1 (`ALPACA_API_KEY = '***'`), line 2: `ALPACA_API_KEY` is set to a literal that looks like a secret "
        "(20 characters); it would be stored in the model zip. Read it from an environment variable or keys.json instead"
    ]
    assert REAL_KEY not in b.summary()


# ----------------------------------------------------------------- settings and requirements


def test_users_settings_are_used_and_backtests_made_headless(tmp_path):
    settings = {"settings": {"use_sandbox_websockets": True}}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    (tmp_path / "backtest.json").write_text(json.dumps({"settings": {"GUI_output": True, "use_price": "open"}}))
    b = build_bundle(simple_notebook(tmp_path))
    out = members(b.write_zip(tmp_path / "m.zip"))
    assert json.loads(out["model/settings.json"]) == settings
    assert json.loads(out["model/backtest.json"]) == {"settings": {"GUI_output": False, "use_price": "open"}}
    assert any("GUI_output set to false" in n for n in b.notes)


def test_user_requirements_are_merged_and_win(tmp_path):
    (tmp_path / "requirements.txt").write_text("ta==0.10.2\n")
    reqs = tmp_path / "extra.txt"
    reqs.write_text("blankly>=1.18\n")
    nb = simple_notebook(tmp_path, ["#| blankly\nimport yaml\n!pip install requests"])
    b = build_bundle(nb, include=["requirements.txt"], requirements=reqs)
    assert b.requirements == [
        "blankly>=1.18",
        "numpy<2",
        "PyYAML==" + metadata.version("PyYAML"),
        "requests==" + metadata.version("requests"),
        "ta==0.10.2",
    ]
    listed = build_bundle(nb, requirements=["PyYAML==6.0"])
    assert "PyYAML==6.0" in listed.requirements


# ----------------------------------------------------------------- problems and results


def test_build_error_lists_each_problem_naming_its_cell(tmp_path):
    nb = write_notebook(
        tmp_path / "bad.ipynb",
        ["THRESHOLD = 30", "#| blankly\nimport not_installed_anywhere_x\nlevel = THRESHOLD + 1"],
    )
    with pytest.raises(BuildError) as err:
        build_bundle(nb, python_version="3")
    problems = err.value.problems
    assert any(p.startswith("python version '3'") for p in problems)
    assert any("`THRESHOLD`" in p and "in cell 1 (`THRESHOLD = 30`)" in p and p.startswith("cell 2 (") for p in problems)
    assert any("`not_installed_anywhere_x`" in p and ", line 2:" in p for p in problems)
    assert str(err.value).startswith("the model cannot be built: python version '3'")


def test_cells_from_a_kernel_build_with_base_dir_and_explicit_selection(tmp_path):
    shutil.copy(PRICES_CSV, tmp_path / "GOOG-USD-1d.csv")
    sources = ["import blankly", "x = undefined_thing", "data = open('GOOG-USD-1d.csv').read()"]
    b = build_bundle(cells_from_sources(sources), base_dir=tmp_path, select=[0, 2], python_version="3.10")
    assert b.selection == "explicit" and [c.index for c in b.cells] == [0, 2]
    assert b.python_version == "3.10" and b.manifest["python_version"] == "3.10"
    assert "GOOG-USD-1d.csv" in [f.path for f in b.files]
    assert b.notebook_name is None


def test_summary_says_what_went_in(rsi_notebook):
    b = build_bundle(rsi_notebook, entry=RSI_ENTRY)
    text = b.summary()
    assert text.splitlines()[0] == "Model from rsi.ipynb: 3 cell(s) taken (marked)"
    assert "  cell 3" not in text and "  cell 4 (`def init(symbol, state: StrategyState):`): `#| blankly`" in text
    assert 'entry point: the given entry point, under `if __name__ == "__main__":`' in text
    assert "Files (6, 37." in text and "GOOG-USD-1d.csv" in text and "33.3 KB" in text
    assert f"Requirements: {BLANKLY_PIN}, numpy<2" in text
    assert "included GOOG-USD-1d.csv" in text
