"""Notebook cells -> a checked Blankly model, ready to zip.

``build_bundle`` gathers everything (the script, blankly.json and friends, the
user's files, requirements.txt) and checks it; nothing is written until
``Bundle.write_zip``. Every problem found is collected and raised at once in a
``BuildError``, each naming its cell.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..formats import size_text
from ..modelzip import MAX_ENTRIES, MAX_UNPACKED, MODEL_TYPES
from ..requirement_lines import read_requirement_lines
from . import manifest as mf
from .bundle import Bundle, BundleFile, Content
from .cells import Cell, cells_from_sources, read_notebook
from .collect import ModelFiles, add_data_files, add_local_modules, module_names, read_json_file
from .errors import BuildError
from .requirements import resolve_requirements
from .result import ExportedScript, ImportRef
from .script import export_script

_MAIN_SCRIPTS = ("bot.py", "blankly_main.py", "blankly_main_2.py", "blankly_main_3.py")


@dataclass
class _Build:
    """What the build has gathered so far."""

    base: Path
    python: str
    script: ExportedScript
    files: ModelFiles
    user_manifest: dict[str, Any] = field(default_factory=dict)
    contents: dict[str, Content] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def generated(self, rel: str, data: bytes) -> None:
        self.contents[rel] = data
        self.sizes[rel] = len(data)


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
    allow_undefined: Sequence[str] = (),
) -> Bundle:
    """Notebook (path) or cells -> a checked Blankly model, ready to zip.

    ``select`` holds cell positions (``Cell.index``); ``allow_undefined`` names
    made at run time that the undefined-name check lets pass. Raises ``ExportError`` for an
    unreadable notebook and ``BuildError`` (with ``.problems``, each naming its
    cell) for anything that would not run.
    """
    cells, notebook_name, default_base = _source(source, notebook_name)
    base = Path(base_dir).expanduser().resolve() if base_dir is not None else default_base
    if not base.is_dir():
        raise BuildError([f"base_dir {base} is not a folder"])
    python, python_note = (str(python_version), None) if python_version else mf.default_python()
    problems = _option_problems(python, model_type, backtest_args)
    script = export_script(cells, entry=entry, notebook_name=notebook_name, select=select,
                           allow_undefined=list(allow_undefined or ()))
    b = _Build(base, python, script, ModelFiles(base, [], allow_keys), problems=problems + script.problems,
               notes=list(script.notes), warnings=list(script.warnings))
    if python_note:
        b.notes.append(python_note)
    _read_user_manifest(b)
    imports = _collect_files(b, [include] if isinstance(include, (str, os.PathLike)) else include)
    user_lines = _user_requirements(b, requirements)
    _settings_files(b)
    main_script = next(n for n in _MAIN_SCRIPTS if n not in b.contents)
    if main_script != "bot.py":
        b.notes.append(f"the model folder has its own bot.py, so the generated script is {main_script}")
    reqs = resolve_requirements(
        imports,
        local_modules=module_names(b.contents) | {main_script[:-3]},
        user_lines=user_lines,
        notebook_lines=script.pip_requirements,
    )
    b.problems.extend(reqs.problems)
    b.notes.extend(reqs.notes)
    b.warnings.extend(reqs.warnings)
    b.generated("requirements.txt", ("\n".join(reqs.lines) + "\n").encode("utf-8"))
    b.generated(main_script, script.text.encode("utf-8"))
    manifest = mf.blankly_json(
        main_script=main_script, python_version=python, model_type=model_type, schedule=schedule,
        backtest_args=backtest_args, model_id=model_id, project_id=project_id, user=b.user_manifest,
        parameters=script.parameters if script.parameters_cell else None,
    )
    b.generated("blankly.json", mf.to_json_bytes(manifest))
    _check_limits(b)
    if b.problems:
        raise BuildError(b.problems)
    ordered = sorted(b.contents)
    return Bundle(
        files=[BundleFile(rel, b.sizes[rel]) for rel in ordered],
        total_size=sum(b.sizes.values()),
        requirements=reqs.lines,
        cells=script.cells,
        selection=script.selection,
        warnings=b.warnings,
        notes=b.notes,
        script=script.text,
        manifest=manifest,
        main_script=main_script,
        python_version=python,
        notebook_name=notebook_name,
        entry_from=script.entry_from,
        parameters=dict(script.parameters),
        parameters_cell=script.parameters_cell,
        _contents={rel: b.contents[rel] for rel in ordered},
    )


def _source(
    source: Union[Sequence[Cell], str, Path], notebook_name: Optional[str]
) -> tuple[list[Cell], Optional[str], Path]:
    """(cells, notebook name, default model folder) from a notebook path or cells."""
    if isinstance(source, (str, os.PathLike)):
        nb_path = Path(source).expanduser()
        return read_notebook(nb_path), notebook_name or nb_path.name, nb_path.resolve().parent
    items = list(source)
    cells = cells_from_sources(items) if items and all(isinstance(c, str) for c in items) else items
    return cells, notebook_name, Path.cwd()


def _option_problems(python: str, model_type: str, backtest_args: Optional[dict]) -> list[str]:
    problems = []
    if not re.fullmatch(r"\d+\.\d+", python):
        problems.append(f"python version {python!r} should look like 3.11 (major.minor)")
    if model_type not in MODEL_TYPES:
        problems.append(f"model type {model_type!r} must be 'strategy' or 'screener'")
    if backtest_args is not None:
        try:
            if not isinstance(backtest_args, dict):
                raise TypeError("not a dict")
            json.dumps(backtest_args)
        except (TypeError, ValueError) as exc:
            problems.append(f"backtest_args must be a JSON object (the kwargs of .backtest()): {exc}")
    return problems


def _read_user_manifest(b: _Build) -> None:
    """The user's blankly.json (never its credentials) and its ignore_files."""
    ignore = list(mf.DEFAULT_DEPLOY_SETTINGS["ignore_files"])
    if (b.base / "blankly.json").is_file():
        data = read_json_file(b.base / "blankly.json", "blankly.json", b.problems)
        if isinstance(data, dict):
            b.user_manifest, dropped = mf.strip_secret_keys(data)
            if dropped:
                b.notes.append(f"blankly.json: {', '.join(dropped)} left out (credentials never go into the zip)")
            given = b.user_manifest.get("python_version")
            if given is not None and str(given) != b.python:
                b.notes.append(
                    f"blankly.json says python_version {given}; using {b.python} (pass python_version to change)"
                )
    if isinstance(b.user_manifest.get("ignore_files"), list):
        ignore += [p for p in b.user_manifest["ignore_files"] if p not in ignore]
    b.files = ModelFiles(b.base, ignore, b.files.allow_keys)


def _collect_files(b: _Build, include: Sequence[Union[str, Path]]) -> list[ImportRef]:
    """The user's files, the settings files beside the notebook, data files and local
    modules the code names; returns every import to resolve."""
    files = b.files
    for item in include:
        files.include(item)
    for name in ("settings.json", "backtest.json", "keys.json"):
        if name not in files.files and (b.base / name).is_file():
            if files.add(name, (b.base / name).resolve(), explicit=False):
                b.notes.append(f"{name} taken from {b.base}")
    add_data_files(b.script.paths, files, b.base, b.notes, b.warnings)
    imports = add_local_modules(b.script.imports, files, b.notes, b.warnings)
    b.problems.extend(files.problems)
    b.notes.extend(files.notes)
    b.warnings.extend(files.warnings)
    files.files.pop("blankly.json", None)
    return imports


def _user_requirements(b: _Build, requirements: Union[str, Path, Sequence[str], None]) -> list[str]:
    """The requirements.txt in the model folder and the ones given, in that order."""
    user_files = b.files.files
    lines: list[str] = []
    if "requirements.txt" in user_files:
        found, errs = read_requirement_lines(user_files.pop("requirements.txt"))
        lines += found
        b.problems.extend(errs)
        b.notes.append("requirements.txt from the model folder merged into the generated one")
    found, errs = read_requirement_lines(requirements)
    b.problems.extend(errs)
    b.contents.update(user_files)
    b.sizes.update({rel: b.files.sizes[rel] for rel in user_files})
    return lines + found


def _settings_files(b: _Build) -> None:
    """settings.json and backtest.json: the user's (backtests made headless), else Blankly's defaults."""
    user_files = b.files.files
    if "settings.json" in b.contents:
        read_json_file(user_files["settings.json"], "settings.json", b.problems)
    else:
        b.generated("settings.json", mf.default_settings_bytes())
    if "backtest.json" in b.contents:
        data = read_json_file(user_files["backtest.json"], "backtest.json", b.problems)
        fixed, changed = mf.headless_backtest_settings(copy.deepcopy(data))
        if changed:
            b.generated("backtest.json", mf.to_json_bytes(fixed))
            b.notes.append("backtest.json: settings.GUI_output set to false so backtests run headless")
    else:
        b.generated("backtest.json", mf.default_backtest_bytes())


def _check_limits(b: _Build) -> None:
    total = sum(b.sizes.values())
    if total > MAX_UNPACKED:
        b.problems.append(
            f"the model is {size_text(total)}; the deployment server accepts at most {size_text(MAX_UNPACKED)}"
        )
    if len(b.contents) > MAX_ENTRIES:
        b.problems.append(
            f"the model has {len(b.contents)} files; the deployment server accepts at most {MAX_ENTRIES}"
        )
