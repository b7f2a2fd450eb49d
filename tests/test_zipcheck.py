"""The server's acceptance check for model zips, on real zip files."""
from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest

from blankly_magics.server.zipcheck import ZipLimits, ZipRejected, inspect_model_zip, safe_extract

GOOD = {
    "model/blankly.json": json.dumps({"main_script": "./bot.py", "requirements": "./requirements.txt"}),
    "model/bot.py": "print('hi')\n",
    "model/requirements.txt": "blankly\n",
    "model/data/prices.csv": "time,open\n",
}


def make_zip(path: Path, entries: dict[str, str], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in entries.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, text)
    return path


def test_a_good_zip_is_described_and_unpacked(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "m.zip", GOOD)
    info = inspect_model_zip(z)
    assert info.main_script == "bot.py"
    assert info.requirements == "requirements.txt"
    assert info.working_directory == "."
    assert info.model_type == "strategy"
    assert "data/prices.csv" in info.files
    out = safe_extract(z, tmp_path / "run")
    assert (out / "bot.py").read_text() == "print('hi')\n"
    assert (out / "data" / "prices.csv").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"other/x.py": "x"}, "outside the single root folder model/"),
        ({"/model/abs.py": "x"}, "absolute path"),
        ({"model/../evil.py": "x"}, "'..'"),
        ({"model/a\x01b": "x"}, "control characters"),
        ({"model/blankly.json": "{not json"}, "not valid JSON"),
        ({"model/blankly.json": "[1, 2]"}, "JSON object"),
        ({"model/blankly.json": json.dumps({"main_script": "./main.py"})}, "main_script './main.py' is not in the zip"),
        ({"model/blankly.json": json.dumps({"main_script": "../bot.py"})}, "outside model/"),
        ({"model/blankly.json": json.dumps({"type": "robot"})}, "type must be"),
    ],
)
def test_bad_zips_are_rejected_with_a_reason(tmp_path: Path, change: dict, message: str) -> None:
    z = make_zip(tmp_path / "m.zip", {**GOOD, **change})
    with pytest.raises(ZipRejected) as err:
        inspect_model_zip(z)
    assert message in err.value.message
    assert not (tmp_path / "run").exists()


def test_missing_manifest_and_not_a_zip(tmp_path: Path) -> None:
    entries = {k: v for k, v in GOOD.items() if k != "model/blankly.json"}
    with pytest.raises(ZipRejected, match="no model/blankly.json"):
        inspect_model_zip(make_zip(tmp_path / "a.zip", entries))
    bad = tmp_path / "b.zip"
    bad.write_bytes(b"this is not a zip")
    with pytest.raises(ZipRejected, match="not a zip"):
        inspect_model_zip(bad)
    truncated = tmp_path / "c.zip"
    truncated.write_bytes(make_zip(tmp_path / "d.zip", GOOD).read_bytes()[:-30])
    with pytest.raises(ZipRejected):
        inspect_model_zip(truncated)


def test_symlinks_and_duplicates_are_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "s.zip", {**GOOD, "model/link": "/etc/passwd"}, symlinks=("model/link",))
    with pytest.raises(ZipRejected, match="symlink"):
        inspect_model_zip(z)
    dup = tmp_path / "dup.zip"
    with zipfile.ZipFile(dup, "w") as zf:
        for name, text in GOOD.items():
            zf.writestr(name, text)
        with pytest.warns(UserWarning):
            zf.writestr("model/bot.py", "print('again')\n")
    with pytest.raises(ZipRejected, match="appears twice"):
        inspect_model_zip(dup)


def test_size_and_entry_caps_answer_413(tmp_path: Path) -> None:
    big = make_zip(tmp_path / "big.zip", {**GOOD, "model/zeros.bin": "\0" * 200_000})
    with pytest.raises(ZipRejected) as err:
        inspect_model_zip(big, ZipLimits(max_uncompressed=100_000))
    assert err.value.status == 413
    many = make_zip(tmp_path / "many.zip", {**GOOD, **{f"model/f{i}.txt": "x" for i in range(20)}})
    with pytest.raises(ZipRejected) as err:
        inspect_model_zip(many, ZipLimits(max_entries=10))
    assert err.value.status == 413


def test_a_zip_that_lies_about_its_sizes_is_stopped_while_unpacking(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "liar.zip", {**GOOD, "model/zeros.bin": "\0" * 300_000})
    # Rewrite the declared sizes in the central directory and local headers to 1 byte.
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("model/zeros.bin")
    size = (300_000).to_bytes(4, "little")
    raw = raw.replace(size, (1).to_bytes(4, "little"))
    z.write_bytes(bytes(raw))
    with pytest.raises(ZipRejected):
        safe_extract(z, tmp_path / "run", ZipLimits(max_uncompressed=100_000))
    assert info.file_size == 300_000
