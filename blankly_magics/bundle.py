"""A Blankly model folder and its reproducible zip, built from notebook cells.

``build_bundle`` gathers everything (the script from ``export``, blankly.json
and friends from ``manifest``, the user's files) and checks it; nothing is
written until ``Bundle.write_zip``. The zip has one root ``model/``, sorted
entries, fixed timestamps and permissions, so the same inputs give the same
bytes and its sha256 names a version.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional, Sequence, Union

from . import manifest as mf
from .export import Cell, CellRef, ExportError, cells_from_sources, export_script, find_imports, read_notebook

__all__ = ["BuildError", "Bundle", "BundleFile", "CellRef", "build_bundle"]

ROOT = "model/"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
DIR_MODE = 0o040755
_CHUNK = 1 << 20
AUTO_INCLUDE_LIMIT = 50 * 1024 * 1024  # data files found in the code, at most this much in all
MAX_MODEL_SIZE = 1 << 30  # what the server accepts unpacked (zipcheck.ZipLimits)
MAX_ENTRIES = 10_000

JUNK_DIRS = {".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", "price_caches", ".pytest_cache",
             ".mypy_cache", ".ruff_cache", ".tox", ".idea", ".vscode"}
JUNK_FILES = {".DS_Store", "Thumbs.db"}
JUNK_SUFFIXES = (".pyc", ".pyo")
GENERATED = ("blankly.json", "requirements.txt", "settings.json", "backtest.json")


class BuildError(ExportError):
    """The model cannot be built; ``problems`` lists each reason, naming its cell."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = f"the model cannot be built: {self.problems[0]}"
        else:
            message = "the model cannot be built:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to model/, with "/"
    size: int


Content = Union[bytes, Path]


@dataclass(repr=False)
class Bundle:
    files: list[BundleFile]
    total_size: int
    requirements: list[str]
    cells: list[CellRef]
    selection: str
    warnings: list[str]
    notes: list[str]
    script: str
    manifest: dict[str, Any]
    main_script: str
    python_version: str
    notebook_name: Optional[str] = None
    entry_from: Optional[str] = None
    _contents: dict[str, Content] = field(default_factory=dict, compare=False)
    _sha256: Optional[str] = field(default=None, compare=False)

    def __repr__(self) -> str:
        return (
            f"Bundle(notebook={self.notebook_name!r}, cells={[c.index for c in self.cells]}, "
            f"files={len(self.files)}, total_size={self.total_size}, requirements={self.requirements!r})"
        )

    # -- the zip

    def _write(self, fh: IO[bytes]) -> None:
        names = set()
        for rel in self._contents:
            parts = rel.split("/")
            names.update("/".join(parts[:i]) + "/" for i in range(1, len(parts)))
        entries = sorted([(ROOT + d, None) for d in names] + [(ROOT + r, r) for r in self._contents])
        sizes = {f.path: f.size for f in self.files}
        with zipfile.ZipFile(fh, "w") as zf:
            zf.writestr(_info(ROOT, directory=True), b"")
            for name, rel in entries:
                if rel is None:
                    zf.writestr(_info(name, directory=True), b"")
                    continue
                content = self._contents[rel]
                info = _info(name, directory=False)
                if isinstance(content, bytes):
                    zf.writestr(info, content)
                    continue
                expected = sizes[rel]
                info.file_size = expected
                written = 0
                try:
                    with open(content, "rb") as src, zf.open(info, "w", force_zip64=expected >= 1 << 31) as out:
                        while True:
                            chunk = src.read(_CHUNK)
                            if not chunk:
                                break
                            written += len(chunk)
                            out.write(chunk)
                except OSError as exc:
                    raise BuildError([f"{rel} cannot be read any more ({exc.strerror or exc}); build again"]) from None
                if written != expected:
                    raise BuildError([f"{rel} changed on disk since the build ({expected} -> {written} bytes); build again"])

    def zip_bytes(self) -> bytes:
        import io

        buf = io.BytesIO()
        self._write(buf)
        data = buf.getvalue()
        self._sha256 = hashlib.sha256(data).hexdigest()
        return data

    def write_zip(self, path: Union[str, Path]) -> Path:
        """Write the zip atomically (a temp file beside it, then ``os.replace``)."""
        target = Path(path).expanduser()
        if target.is_dir():
            raise ExportError(f"{target} is a folder; give the zip file's path")
        parent = target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
        except OSError as exc:
            raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w+b") as fh:
                self._write(fh)
                fh.flush()
                os.fsync(fh.fileno())
                self._sha256 = _hash_file(fh)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
            raise
        return target

    @property
    def sha256(self) -> str:
        """sha256 of the zip's bytes (rendered once, spooled to disk when large)."""
        if self._sha256 is None:
            with tempfile.SpooledTemporaryFile(max_size=64 << 20) as fh:
                self._write(fh)
                self._sha256 = _hash_file(fh)
        return self._sha256

    # -- for people

    def summary(self) -> str:
        lines = []
        source = self.notebook_name or "notebook cells"
        lines.append(f"Model from {source}: {len(self.cells)} cell(s) taken ({self.selection})")
        for c in self.cells:
            label = f"cell {c.index}" + (f" (id {c.id})" if c.id else "")
            lines.append(f"  {label}: {c.reason}")
        lines.append(
            f"  entry point: {self.entry_from}"
            if self.entry_from
            else "  entry point: none (the script runs the cells top to bottom)"
        )
        lines.append(f"Files ({len(self.files)}, {_size(self.total_size)}), main script {self.main_script}:")
        width = max((len(f.path) for f in self.files), default=0)
        for f in self.files:
            lines.append(f"  {f.path.ljust(width)}  {_size(f.size):>9}")
        lines.append(f"Requirements: {', '.join(self.requirements) if self.requirements else '(none)'}")
        lines.append(f"Python: {self.python_version}")
        for title, items in (("Notes", self.notes), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  - {item}" for item in items)
        return "\n".join(lines)


def _info(name: str, *, directory: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.create_system = 3  # unix, so the permission bits below mean what they say
    if directory:
        info.external_attr = (DIR_MODE << 16) | 0x10
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = FILE_MODE << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _hash_file(fh: IO[bytes]) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    while True:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


# --------------------------------------------------------------------------- collecting files


class _Files:
    """The user's files that go into the model, checked one by one."""

    def __init__(self, base: Path, ignore: Sequence[str], allow_keys: bool) -> None:
        self.base = base
        # Blankly writes ignore_files relative to the project ("./data/raw", ".git").
        self.ignore = [re.sub(r"^(?:\./)+", "", p.strip()).rstrip("/") for p in ignore if isinstance(p, str) and p.strip(" ./")]
        self.allow_keys = allow_keys
        self.files: dict[str, Path] = {}
        self.sizes: dict[str, int] = {}
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.problems: list[str] = []

    def _ignored(self, rel: str) -> bool:
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
            if entry.name in JUNK_FILES or entry.name.endswith(JUNK_SUFFIXES) or self._ignored(rel):
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
            secret = mf.keys_json_has_secrets(raw)
            what = "it holds real-looking exchange keys"
        elif name == ".env":
            secret = bool(raw.strip())
            what = "it may hold credentials"
        else:
            try:
                data = json.loads(raw)
            except ValueError:
                data = {}
            secret = isinstance(data, dict) and bool(mf.strip_secret_keys(data)[1])
            what = "it holds api_key/api_pass"
        if not secret:
            return True
        if self.allow_keys:
            self.warnings.append(f"{rel} is included with its secrets because allow_keys is set")
            return True
        self.notes.append(f"left out {rel}: {what}; pass allow_keys=True (--allow-keys) to ship it")
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
            return (ROOT + "blankly.json") in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _read_json_file(path: Path, label: str, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_bytes())
    except ValueError as exc:
        problems.append(f"{label} is not valid JSON ({exc}); fix it or remove it")
    except OSError as exc:
        problems.append(f"{label} cannot be read: {exc.strerror or exc}")
    return None


# --------------------------------------------------------------------------- the build


def build_bundle(
    source: Union[Sequence[Cell], str, Path],
    *,
    entry: Optional[str] = None,
    notebook_name: Optional[str] = None,
    base_dir: Union[str, Path, None] = None,
    include: Union[Sequence[Union[str, Path]], str, Path] = (),
    requirements: Union[str, Path, Sequence[str], None] = None,
    python_version: Optional[str] = None,
    allow_keys: bool = False,
    model_type: str = "strategy",
    schedule: Optional[str] = None,
    backtest_args: Optional[dict] = None,
    model_id: Optional[str] = None,
    project_id: Optional[str] = None,
    select: Optional[Sequence[int]] = None,
) -> Bundle:
    """Notebook (path) or cells -> a checked Blankly model, ready to zip.

    Raises ``ExportError`` for an unreadable notebook and ``BuildError`` (with
    ``.problems``, each naming its cell) for anything that would not run.
    """
    problems: list[str] = []
    if isinstance(source, (str, os.PathLike)):
        nb_path = Path(source).expanduser()
        cells = read_notebook(nb_path)
        notebook_name = notebook_name or nb_path.name
        default_base = nb_path.resolve().parent
    else:
        items = list(source)
        cells = cells_from_sources(items) if items and all(isinstance(c, str) for c in items) else items
        default_base = Path.cwd()
    base = Path(base_dir).expanduser().resolve() if base_dir is not None else default_base
    if not base.is_dir():
        raise BuildError([f"base_dir {base} is not a folder"])
    python = python_version or mf.running_python()
    if not re.fullmatch(r"\d+\.\d+", str(python)):
        problems.append(f"python version {python!r} should look like 3.11 (major.minor)")
    if model_type not in ("strategy", "screener"):
        problems.append(f"model type {model_type!r} must be 'strategy' or 'screener'")
    if backtest_args is not None:
        try:
            if not isinstance(backtest_args, dict):
                raise TypeError("not a dict")
            json.dumps(backtest_args)
        except (TypeError, ValueError) as exc:
            problems.append(f"backtest_args must be a JSON object (the kwargs of .backtest()): {exc}")
    if isinstance(include, (str, os.PathLike)):
        include = [include]

    script = export_script(cells, entry=entry, notebook_name=notebook_name, select=select)
    problems.extend(script.problems)
    notes = list(script.notes)
    warnings = list(script.warnings)

    # The user's blankly.json (never its credentials) and its ignore_files.
    user_manifest: dict[str, Any] = {}
    if (base / "blankly.json").is_file():
        data = _read_json_file(base / "blankly.json", "blankly.json", problems)
        if isinstance(data, dict):
            user_manifest, dropped = mf.strip_secret_keys(data)
            if dropped:
                notes.append(f"blankly.json: {', '.join(dropped)} left out (credentials never go into the zip)")
            given = user_manifest.get("python_version")
            if given is not None and str(given) != str(python):
                notes.append(f"blankly.json says python_version {given}; using {python} (pass python_version to change)")
    ignore = list(mf.DEFAULT_DEPLOY_SETTINGS["ignore_files"])
    if isinstance(user_manifest.get("ignore_files"), list):
        ignore += [p for p in user_manifest["ignore_files"] if p not in ignore]

    files = _Files(base, ignore, allow_keys)
    for item in include:
        files.include(item)
    for name in ("settings.json", "backtest.json", "keys.json"):
        if name not in files.files and (base / name).is_file():
            if files.add(name, (base / name).resolve(), explicit=False):
                notes.append(f"{name} taken from {base}")
    _data_files(script.paths, files, base, notes, warnings)
    imports = _local_modules(script.imports, files, notes, warnings)

    # Root files we write ourselves, merged with the user's.
    user_files = files.files
    user_files.pop("blankly.json", None)
    user_lines: list[str] = []
    if "requirements.txt" in user_files:
        lines, errs = mf.read_requirement_lines(user_files.pop("requirements.txt"))
        user_lines += lines
        problems.extend(errs)
        notes.append("requirements.txt from the model folder merged into the generated one")
    lines, errs = mf.read_requirement_lines(requirements)
    user_lines += lines
    problems.extend(errs)
    contents: dict[str, Content] = dict(user_files)
    sizes = dict(files.sizes)

    def generated(rel: str, data: bytes) -> None:
        contents[rel] = data
        sizes[rel] = len(data)

    if "settings.json" in contents:
        _read_json_file(user_files["settings.json"], "settings.json", problems)
    else:
        generated("settings.json", mf.default_settings_bytes())
    if "backtest.json" in contents:
        data = _read_json_file(user_files["backtest.json"], "backtest.json", problems)
        fixed, changed = mf.headless_backtest_settings(copy.deepcopy(data))
        if changed:
            generated("backtest.json", mf.to_json_bytes(fixed))
            notes.append("backtest.json: settings.GUI_output set to false so backtests run headless")
    else:
        generated("backtest.json", mf.default_backtest_bytes())
    main_script = next(n for n in ("bot.py", "blankly_main.py", "blankly_main_2.py", "blankly_main_3.py") if n not in contents)
    if main_script != "bot.py":
        notes.append(f"the model folder has its own bot.py, so the generated script is {main_script}")

    reqs = mf.resolve_requirements(
        imports,
        local_modules=_module_names(contents) | {main_script[:-3]},
        user_lines=user_lines,
        notebook_lines=script.pip_requirements,
    )
    problems.extend(reqs.problems)
    notes.extend(reqs.notes)
    warnings.extend(reqs.warnings)
    generated("requirements.txt", ("\n".join(reqs.lines) + "\n").encode("utf-8"))
    generated(main_script, script.text.encode("utf-8"))
    manifest = mf.blankly_json(
        main_script=main_script,
        python_version=str(python),
        model_type=model_type,
        schedule=schedule,
        backtest_args=backtest_args,
        model_id=model_id,
        project_id=project_id,
        user=user_manifest,
    )
    generated("blankly.json", mf.to_json_bytes(manifest))

    problems.extend(files.problems)
    notes.extend(files.notes)
    warnings.extend(files.warnings)
    total = sum(sizes.values())
    if total > MAX_MODEL_SIZE:
        problems.append(f"the model is {_size(total)}; the deployment server accepts at most {_size(MAX_MODEL_SIZE)}")
    if len(contents) > MAX_ENTRIES:
        problems.append(f"the model has {len(contents)} files; the deployment server accepts at most {MAX_ENTRIES}")
    if problems:
        raise BuildError(problems)
    ordered = sorted(contents)
    return Bundle(
        files=[BundleFile(rel, sizes[rel]) for rel in ordered],
        total_size=total,
        requirements=reqs.lines,
        cells=script.cells,
        selection=script.selection,
        warnings=warnings,
        notes=notes,
        script=script.text,
        manifest=manifest,
        main_script=main_script,
        python_version=str(python),
        notebook_name=notebook_name,
        entry_from=script.entry_from,
        _contents={rel: contents[rel] for rel in ordered},
    )


def _data_files(paths: Sequence[tuple[str, str]], files: _Files, base: Path, notes: list[str], warnings: list[str]) -> None:
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
        if not full.is_file():
            continue
        rel = files.relative(full)
        if rel is None:
            warnings.append(f"{where}: `{value}` is outside the model folder {base}; it will not be in the zip")
            continue
        if rel in files.files or rel in GENERATED or files._ignored(rel):
            continue
        if any(part in JUNK_DIRS for part in rel.split("/")):
            continue
        size = full.stat().st_size
        if size > budget:
            warnings.append(
                f"{where}: `{value}` ({_size(size)}) was not included automatically (over "
                f"{_size(AUTO_INCLUDE_LIMIT)} of data files); name it in include= if the model needs it"
            )
            continue
        if files.add(rel, full.resolve(), explicit=False, why=f"included {rel}: {where} names it"):
            budget -= size


def _local_modules(imports: Sequence, files: _Files, notes: list[str], warnings: list[str]) -> list[tuple[str, bool, str]]:
    """Include local modules the script imports (and theirs); return every import to resolve."""
    result: list[tuple[str, bool, str]] = []
    queue = [(i.module, i.optional, i.where) for i in imports]
    done: set[str] = set()
    while queue:
        module, optional, where = queue.pop(0)
        result.append((module, optional, where))
        top = module.split(".", 1)[0]
        if top in done or mf.is_stdlib(top):
            continue
        done.add(top)
        had = (top + ".py") in files.files or any(r.startswith(top + "/") for r in files.files)
        if files.local_module(top) is None:
            continue
        if not had:
            notes.append(f"included the local module {top} ({where} imports it)")
        for rel, path in sorted(files.files.items()):
            if rel == top + ".py" or (rel.startswith(top + "/") and rel.endswith(".py")):
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    warnings.append(f"{rel} cannot be read for its imports: {exc}")
                    continue
                queue.extend((mod, opt, f"{rel}, line {line}") for mod, opt, line in find_imports(text))
    return result


def _module_names(contents: dict[str, Content]) -> set[str]:
    """Top-level modules the zip itself provides (``x.py`` and folders with Python files)."""
    names = set()
    for rel in contents:
        if rel.endswith(".py"):
            head = rel.split("/", 1)[0]
            names.add(head[:-3] if head.endswith(".py") else head)
    return names
