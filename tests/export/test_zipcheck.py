"""The server's acceptance check for model zips, on real zip files."""
from __future__ import annotations

import json
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from blankly_magics.server.zipcheck import ZipLimits, ZipRejected, ZipTooLarge, inspect_model_zip, safe_extract

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


# ---------------------------------------------------------------- every member's data is read and checked


def _member_data_at(raw: bytes, info: zipfile.ZipInfo) -> int:
    """Offset of a member's (compressed) data: after its local header, name and extra field."""
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def _central_entry(raw: bytes, name: str) -> int:
    """Offset of ``name``'s entry in the central directory."""
    at = raw.index(b"PK\x01\x02")
    while True:
        name_len, extra_len, comment_len = struct.unpack("<HHH", raw[at + 28:at + 34])
        if raw[at + 46:at + 46 + name_len] == name.encode():
            return at
        at += 46 + name_len + extra_len + comment_len


def _patched(raw: bytes, at: int, fmt: str, value: int) -> bytes:
    size = struct.calcsize(fmt)
    return raw[:at] + struct.pack(fmt, value) + raw[at + size:]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_flipped_data_byte_is_refused_whatever_the_compression(tmp_path: Path, compression: int) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", compression) as zf:
        for name, text in {**GOOD, "model/bot.py": "print('hi')\n" * 50}.items():
            zf.writestr(name, text)
    assert inspect_model_zip(good).main_script == "bot.py"
    raw = good.read_bytes()
    info = zipfile.ZipFile(good).getinfo("model/bot.py")
    at = _member_data_at(raw, info) + info.compress_size // 2
    bad = tmp_path / "bad.zip"
    bad.write_bytes(raw[:at] + bytes([raw[at] ^ 0x55]) + raw[at + 1:])
    with pytest.raises(ZipRejected) as err:
        inspect_model_zip(bad)
    assert err.value.status == 422
    assert err.value.message.startswith("zip entry 'model/bot.py' is damaged"), err.value.message


def test_a_damaged_manifest_is_called_damaged_not_bad_json(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "m.zip", GOOD)
    raw = z.read_bytes()
    info = zipfile.ZipFile(z).getinfo("model/blankly.json")
    crc_at = _central_entry(raw, "model/blankly.json") + 16
    z.write_bytes(_patched(raw, crc_at, "<I", info.CRC ^ 1))
    with pytest.raises(ZipRejected, match=r"zip entry 'model/blankly.json' is damaged \(CRC mismatch\)"):
        inspect_model_zip(z)


@pytest.mark.parametrize("change, message", [
    ("file size larger", "CRC mismatch"),  # the data unpacks to fewer bytes than the directory says
    ("file size smaller", "unpacks to more than its declared size"),
    ("compressed size past the end", "cut short"),
    ("stored sizes differ", "stored uncompressed, yet its two sizes differ"),
    ("local name differs", "its local header names another file"),
    ("header offset wrong", "no local header where the zip's directory points"),
    ("unknown method", "compression method 99"),
])
def test_a_directory_that_lies_about_a_member_is_refused(tmp_path: Path, change: str, message: str) -> None:
    z = tmp_path / "m.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in {**GOOD, "model/data/prices.csv": "time,open\n" * 200}.items():
            zf.writestr(name, text)
    raw = z.read_bytes()
    info = zipfile.ZipFile(z).getinfo("model/data/prices.csv")
    entry = _central_entry(raw, "model/data/prices.csv")
    if change == "file size larger":
        raw = _patched(raw, entry + 24, "<I", info.file_size + 10)
    elif change == "file size smaller":
        raw = _patched(raw, entry + 24, "<I", info.file_size - 10)
    elif change == "compressed size past the end":
        raw = _patched(raw, entry + 20, "<I", len(raw) * 2)
    elif change == "stored sizes differ":
        raw = _patched(raw, entry + 10, "<H", zipfile.ZIP_STORED)
    elif change == "local name differs":
        local = info.header_offset + 30
        raw = raw[:local] + b"M" + raw[local + 1:]
    elif change == "header offset wrong":
        raw = _patched(raw, entry + 42, "<I", info.header_offset + 3)
    else:
        raw = _patched(raw, entry + 10, "<H", 99)
        raw = _patched(raw, info.header_offset + 8, "<H", 99)
    z.write_bytes(raw)
    with pytest.raises(ZipRejected) as err:
        inspect_model_zip(z)
    assert message in err.value.message and "model/data/prices.csv" in err.value.message, err.value.message


def test_a_directory_from_a_newer_zip_version_is_refused_not_crashed_on(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "m.zip", GOOD)
    raw = z.read_bytes()
    entry = _central_entry(raw, "model/bot.py")
    z.write_bytes(_patched(raw, entry + 6, "<B", 99))  # "version needed to extract" 9.9
    with pytest.raises(ZipRejected, match="cannot be read: zip file version 9.9"):
        inspect_model_zip(z)


def test_the_bytes_of_a_zip_are_checked_like_its_file(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "m.zip", GOOD)
    assert inspect_model_zip(z.read_bytes()) == inspect_model_zip(z)
    with pytest.raises(ZipRejected, match="not a zip"):
        inspect_model_zip(b"this is not a zip")
    raw = z.read_bytes()
    info = zipfile.ZipFile(z).getinfo("model/bot.py")
    at = _member_data_at(raw, info)
    with pytest.raises(ZipRejected, match="model/bot.py' is damaged"):
        inspect_model_zip(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:])


def test_the_caps_are_told_apart_from_other_refusals(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "m.zip", {**GOOD, "model/zeros.bin": "\0" * 200_000})
    for limits in (ZipLimits(max_uncompressed=100_000), ZipLimits(max_entries=3)):
        with pytest.raises(ZipTooLarge) as err:
            inspect_model_zip(z, limits)
        assert err.value.status == 413
    with pytest.raises(ZipRejected) as err:
        inspect_model_zip(make_zip(tmp_path / "n.zip", {**GOOD, "model/blankly.json": "[1]"}))
    assert not isinstance(err.value, ZipTooLarge)
    bzipped = tmp_path / "b.zip"
    with zipfile.ZipFile(bzipped, "w", zipfile.ZIP_BZIP2) as zf:
        for name, text in GOOD.items():
            zf.writestr(name, text)
    assert inspect_model_zip(bzipped).main_script == "bot.py"
    with pytest.raises(ZipTooLarge, match="bzip2 or lzma"):
        inspect_model_zip(bzipped, ZipLimits(bzip2_lzma=False))
