"""The user's files that go into a model: what the user includes, the data files and
local modules the code names, and never credentials unless allowed.

Folders are walked without the usual junk (VCS folders, caches, virtualenvs,
earlier model zips); symlinks leading out of the model folder are not followed.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from ..formats import size_text
from ..modelzip import MANIFEST
from .distributions import is_stdlib
from .manifest import keys_json_has_secrets, strip_secret_keys
from .result import ImportRef
from .scan import find_imports

AUTO_INCLUDE_LIMIT = 50 * 1024 * 1024  # data files found in the code, at most this much in all

JUNK_DIRS = {".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", "price_caches", ".pytest_cache",
             ".mypy_cache", ".ruff_cache", ".tox", ".idea", ".vscode"}
JUNK_FILES = {".DS_Store", "Thumbs.db"}
JUNK_SUFFIXES = (".pyc", ".pyo")
GENERATED = ("blankly.json", "requirements.txt", "settings.json", "backtest.json")
# Where real exchange keys go instead of a zip: the server keeps them and hands them to each run.
STORE_KEYS = ("`%blankly keys import keys.json` (`blankly-magics keys import keys.json` in a terminal) stores "
              "them on the server, which hands them to each run as keys.json")
# Suffixes of files a model reads: a string naming one that is missing is worth a warning.
# (Other dotted strings, such as logger names or "a.b" keys, are not.)
DATA_SUFFIXES = {".csv", ".tsv", ".json", ".jsonl", ".parquet", ".pq", ".feather", ".arrow", ".h5", ".hdf5",
                 ".hdf", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".xlsx", ".xls", ".txt", ".dat",
                 ".db", ".sqlite", ".sqlite3", ".zip", ".gz", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".xml"}


class ModelFiles:
    """The user's files that go into the model, checked one by one."""

    def __init__(self, base: Path, ignore: Sequence[str], allow_keys: bool) -> None:
        self.base = base
        # Blankly writes ignore_files relative to the project ("./data/raw", ".git").
        self.ignore = [
            re.sub(r"^(?:\./)+", "", p.strip()).rstrip("/") for p in ignore if isinstance(p, str) and p.strip(" ./")
        ]
        self.allow_keys = allow_keys
        self.files: dict[str, Path] = {}
        self.sizes: dict[str, int] = {}
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.problems: list[str] = []

    def ignored(self, rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) or rel.startswith(p + "/") for p in self.ignore
        )

    def relative(self, path: Path) -> Optional[str]:
        """``path`` relative to the base folder (symlinks resolved), or None if outside it."""
        try:
            return path.resolve().relative_to(self.base).as_posix()
        except (ValueError, OSError):
            return None

    def include(self, item: Union[str, Path]) -> None:
        """A path the user named (file or folder, relative to the base folder)."""
        path = Path(item).expanduser()
        path = path if path.is_absolute() else self.base / path
        if not os.path.lexists(path):
            self.problems.append(f"include: `{item}` does not exist (looked in {self.base})")
            return
        rel = self.relative(path)
        if rel is None:
            self.problems.append(
                f"include: `{item}` is outside the model folder {self.base}; copy it into that folder "
                "(or pass a base_dir that holds it)"
            )
            return
        if path.is_dir():
            self._walk(path.resolve(), rel if rel != "." else "")
        elif path.is_file():
            self.add(rel, path.resolve(), explicit=True)
        else:
            self.problems.append(f"include: `{item}` is neither a file nor a folder")

    def _walk(self, folder: Path, prefix: str) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            self.problems.append(f"include: cannot read the folder {folder}: {exc.strerror or exc}")
            return
        for entry in entries:
            rel = f"{prefix}/{entry.name}" if prefix else entry.name
            if entry.name in JUNK_FILES or entry.name.endswith(JUNK_SUFFIXES) or self.ignored(rel):
                continue
            if entry.is_symlink():
                target = self.relative(Path(entry.path))
                if target is None:
                    self.warnings.append(f"left out {rel}: a symlink to something outside the model folder")
                    continue
                if Path(entry.path).is_dir():
                    self.notes.append(f"left out {rel}/: a symlinked folder (include its target instead)")
                    continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                if entry.name in JUNK_DIRS:
                    continue
                if os.path.exists(os.path.join(entry.path, "pyvenv.cfg")) or os.path.isdir(
                    os.path.join(entry.path, "conda-meta")
                ):
                    self.notes.append(f"left out {rel}/: a Python environment")
                    continue
                self._walk(Path(entry.path), rel)
            elif entry.is_file():
                if entry.name.endswith(".zip") and _is_model_zip(entry.path):
                    self.notes.append(f"left out {rel}: a model zip (an earlier build?)")
                    continue
                self.add(rel, Path(entry.path).resolve(), explicit=False)

    def add(self, rel: str, path: Path, *, explicit: bool, why: str = "") -> bool:
        if rel in self.files:
            return True
        if any(ord(ch) < 32 for ch in rel) or "\\" in rel:
            self.warnings.append(f"left out {rel!r}: its name has a backslash or control characters")
            return False
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            self.warnings.append(f"left out {rel!r}: its name is not valid UTF-8")
            return False
        name = rel.rsplit("/", 1)[-1]
        if name in ("keys.json", ".env") or (name == "blankly.json" and "/" in rel):
            if not self._secret_ok(rel, path):
                return False
        try:
            size = path.stat().st_size
        except OSError as exc:
            self.warnings.append(f"left out {rel}: {exc.strerror or exc}")
            return False
        self.files[rel] = path
        self.sizes[rel] = size
        if why:
            self.notes.append(why)
        return True

    def _secret_ok(self, rel: str, path: Path) -> bool:
        """Files that may hold credentials go in only when they hold none, or when allowed."""
        try:
            raw = path.read_bytes()
        except OSError:
            raw = b""
        name = rel.rsplit("/", 1)[-1]
        if name == "keys.json":
            secret = keys_json_has_secrets(raw)
            what = "it holds real-looking exchange keys"
        elif name == ".env":
            secret = bool(raw.strip())
            what = "it may hold credentials"
        else:
            try:
                data = json.loads(raw)
            except ValueError:
                data = {}
            secret = isinstance(data, dict) and bool(strip_secret_keys(data)[1])
            what = "it holds api_key/api_pass"
        if not secret:
            return True
        if self.allow_keys:
            instead = f"; {STORE_KEYS} instead" if name == "keys.json" else ""
            self.warnings.append(f"{rel} is included with its secrets because allow_keys is set: they become part "
                                 f"of an immutable version, kept for good and readable by whatever reads versions"
                                 f"{instead}")
            return True
        store = f"{STORE_KEYS}; or " if name == "keys.json" else ""
        self.notes.append(f"left out {rel}: {what}; {store}pass allow_keys=True (--allow-keys) to ship it")
        return False

    def local_module(self, top: str) -> Optional[str]:
        """Include ``top.py`` or the package folder ``top/`` from the base folder, if there is one."""
        if (top + ".py") in self.files or any(r.startswith(top + "/") for r in self.files):
            return top
        single = self.base / (top + ".py")
        package = self.base / top
        if single.is_file() and self.relative(single) is not None:
            self.add(top + ".py", single.resolve(), explicit=False)
            return top
        if package.is_dir() and self.relative(package) is not None and any(package.glob("*.py")):
            self._walk(package.resolve(), top)
            return top
        return None


def _is_model_zip(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return MANIFEST in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def read_json_file(path: Path, label: str, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_bytes())
    except ValueError as exc:
        problems.append(f"{label} is not valid JSON ({exc}); fix it or remove it")
    except OSError as exc:
        problems.append(f"{label} cannot be read: {exc.strerror or exc}")
    return None


def names_data_file(value: str) -> bool:
    """Does a string literal name a data file (a known suffix), not a generated file?"""
    name = value.rsplit("/", 1)[-1]
    return name not in GENERATED and os.path.splitext(name)[1].lower() in DATA_SUFFIXES


def add_data_files(
    paths: Sequence[tuple[str, str]], files: ModelFiles, base: Path, notes: list[str], warnings: list[str]
) -> None:
    """Include data files the code names in string literals (``"./GOOG-USD-1d.csv"``)."""
    budget = AUTO_INCLUDE_LIMIT
    seen: set[str] = set()
    for value, where in paths:
        if value in seen:
            continue
        seen.add(value)
        path = Path(value).expanduser()
        if path.is_absolute():
            if path.is_file():
                warnings.append(
                    f"{where}: `{value}` is an absolute path; it will not exist where the model runs: "
                    "put the file in the model folder and use a relative path"
                )
            continue
        full = base / path
        if not full.exists() and names_data_file(value):
            warnings.append(
                f"{where}: `{value}` is not in the model folder {base}, so the zip will not have it "
                "(fine if the model writes it when it runs)"
            )
        if not full.is_file():
            continue
        rel = files.relative(full)
        if rel is None:
            warnings.append(f"{where}: `{value}` is outside the model folder {base}; it will not be in the zip")
            continue
        if rel in files.files or rel in GENERATED or files.ignored(rel):
            continue
        if any(part in JUNK_DIRS for part in rel.split("/")):
            continue
        size = full.stat().st_size
        if size > budget:
            warnings.append(
                f"{where}: `{value}` ({size_text(size)}) was not included automatically (over "
                f"{size_text(AUTO_INCLUDE_LIMIT)} of data files); name it in include= if the model needs it"
            )
            continue
        if files.add(rel, full.resolve(), explicit=False, why=f"included {rel}: {where} names it"):
            budget -= size


def add_local_modules(
    imports: Sequence[ImportRef], files: ModelFiles, notes: list[str], warnings: list[str]
) -> list[ImportRef]:
    """Include local modules the script imports (and theirs); return every import to resolve.

    An import inside a function of a local module is marked ``deferred``: the module
    may never call it (a download helper), so it is not required to be installed."""
    result: list[ImportRef] = []
    queue = list(imports)
    done: set[str] = set()
    while queue:
        ref = queue.pop(0)
        result.append(ref)
        top = ref.top
        if top in done or is_stdlib(top):
            continue
        done.add(top)
        had = (top + ".py") in files.files or any(r.startswith(top + "/") for r in files.files)
        if files.local_module(top) is None:
            continue
        if not had:
            notes.append(f"included the local module {top} ({ref.where} imports it)")
        for rel, path in sorted(files.files.items()):
            if rel == top + ".py" or (rel.startswith(top + "/") and rel.endswith(".py")):
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    warnings.append(f"{rel} cannot be read for its imports: {exc}")
                    continue
                queue.extend(
                    ImportRef(f.module, f.optional, f"{rel}, line {f.line}", deferred=f.in_function)
                    for f in find_imports(text)
                )
    return result


def module_names(paths: Iterable[str]) -> set[str]:
    """Top-level modules the zip itself provides (``x.py`` and folders with Python files)."""
    names = set()
    for rel in paths:
        if rel.endswith(".py"):
            head = rel.split("/", 1)[0]
            names.add(head[:-3] if head.endswith(".py") else head)
    return names
