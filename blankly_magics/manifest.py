"""What sits beside the script in a Blankly model: blankly.json, requirements.txt,
settings.json and backtest.json.

Requirements are inferred from the imports and pinned to what is installed
here (``importlib.metadata``): an import no installed distribution provides is
reported, never guessed from a package index. Blankly's default settings are
kept here as data (a test compares them with the installed blankly).
"""
from __future__ import annotations

import copy
import functools
import importlib.metadata as metadata
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

__all__ = [
    "DEFAULT_BACKTEST_SETTINGS",
    "DEFAULT_DEPLOY_SETTINGS",
    "DEFAULT_GENERAL_SETTINGS",
    "Requirements",
    "blankly_json",
    "distributions_for",
    "headless_backtest_settings",
    "installed_version",
    "is_stdlib",
    "keys_json_has_secrets",
    "normalize_name",
    "read_requirement_lines",
    "resolve_requirements",
    "running_python",
    "strip_secret_keys",
]

# Blankly 1.18's defaults (blankly.utils.utils.default_general_settings,
# default_backtest_settings, default_deploy_settings), as plain data.
DEFAULT_GENERAL_SETTINGS: dict[str, Any] = {
    "settings": {
        "use_sandbox_websockets": False,
        "websocket_buffer_size": 10000,
        "test_connectivity_on_auth": True,
        "auto_truncate": False,
        "global_shorting": False,
        "simulate_margin": True,
        "coinbase_pro": {"cash": "USD"},
        "binance": {"cash": "USDT", "binance_tld": "us"},
        "binance_futures": {"cash": "USDT", "margin_type": "USDT-M"},
        "alpaca": {"websocket_stream": "iex", "cash": "USD", "enable_shorting": True, "use_yfinance": False},
        "oanda": {"cash": "USD"},
        "okx": {"cash": "USDT"},
        "keyless": {"cash": "USD"},
        "kucoin": {"cash": "USDT"},
        "ftx": {"cash": "USD", "ftx_tld": "us"},
        "ftx_futures": {"cash": "USD", "ftx_tld": "com"},
        "paper": {"price_source": "api"},
    }
}

DEFAULT_BACKTEST_SETTINGS: dict[str, Any] = {
    "price_data": {"assets": []},
    "settings": {
        "use_price": "close",
        "smooth_prices": False,
        "GUI_output": True,
        "show_tickers_with_zero_delta": False,
        "save_initial_account_value": True,
        "show_progress_during_backtest": True,
        "cache_location": "./price_caches",
        "continuous_caching": True,
        "resample_account_value_for_metrics": "1d",
        "quote_account_value_in": "USD",
        "ignore_user_exceptions": True,
        "risk_free_return_rate": 0.0,
        "benchmark_symbol": None,
    },
}

DEFAULT_DEPLOY_SETTINGS: dict[str, Any] = {
    "main_script": "./bot.py",
    "python_version": "3.7",
    "requirements": "./requirements.txt",
    "working_directory": ".",
    "ignore_files": ["price_caches", ".git", ".idea", ".vscode"],
    "backtest_args": {"to": "1y"},
    "screener": {"schedule": "30 14 * * 1-5"},
}

# Keys of blankly.json (or anything like them) that hold credentials.
_SECRET_KEY = re.compile(r"(?i)(api_?key|api_?pass|secret|token|passw|credential)")


def running_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def to_json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=4) + "\n").encode("utf-8")


def strip_secret_keys(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of a blankly.json dict without credential keys, and the keys removed."""
    kept = {k: v for k, v in data.items() if not _SECRET_KEY.search(str(k))}
    return kept, sorted(k for k in data if k not in kept)


def blankly_json(
    *,
    main_script: str,
    python_version: str,
    model_type: str = "strategy",
    schedule: Optional[str] = None,
    backtest_args: Optional[dict[str, Any]] = None,
    model_id: Optional[str] = None,
    project_id: Optional[str] = None,
    user: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """blankly.json: Blankly's keys and defaults, the user's own file (minus secrets), our values."""
    data = copy.deepcopy(DEFAULT_DEPLOY_SETTINGS)
    user, _ = strip_secret_keys(user or {})
    for key, value in user.items():
        data[key] = copy.deepcopy(value)
    data["main_script"] = "./" + main_script
    data["python_version"] = python_version
    data["requirements"] = "./requirements.txt"
    data["working_directory"] = "."
    if not isinstance(data.get("ignore_files"), list):
        data["ignore_files"] = list(DEFAULT_DEPLOY_SETTINGS["ignore_files"])
    if backtest_args is not None:
        data["backtest_args"] = copy.deepcopy(backtest_args)
    screener = data.get("screener") if isinstance(data.get("screener"), dict) else {}
    data["screener"] = {**screener, "schedule": schedule or screener.get("schedule") or "30 14 * * 1-5"}
    data["type"] = model_type
    if model_id:
        data["model_id"] = model_id
    if project_id:
        data["project_id"] = project_id
    return data


def headless_backtest_settings(data: Any) -> tuple[Any, bool]:
    """backtest.json with settings.GUI_output false; and whether anything changed."""
    if not isinstance(data, dict):
        return data, False
    settings = data.get("settings")
    if not isinstance(settings, dict):
        data = {**data, "settings": {"GUI_output": False}}
        return data, True
    if settings.get("GUI_output") is False:
        return data, False
    return {**data, "settings": {**settings, "GUI_output": False}}, True


def default_settings_bytes() -> bytes:
    return to_json_bytes(DEFAULT_GENERAL_SETTINGS)


def default_backtest_bytes() -> bytes:
    return to_json_bytes(headless_backtest_settings(copy.deepcopy(DEFAULT_BACKTEST_SETTINGS))[0])


def keys_json_has_secrets(raw: bytes) -> bool:
    """True when keys.json holds anything but Blankly's ``*****`` placeholders (or cannot be read)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return True
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(v for k, v in item.items() if k != "sandbox")
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item.strip() and set(item.strip()) != {"*"}:
            return True
    return False


# --------------------------------------------------------------------------- imports -> distributions


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_stdlib(module: str) -> bool:
    top = module.split(".", 1)[0]
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return top in names or top == "__future__"
    return _stdlib_by_location(top)


@functools.lru_cache(maxsize=None)
def _stdlib_by_location(top: str) -> bool:  # Python 3.9: no sys.stdlib_module_names
    import importlib.util
    import sysconfig

    if top in sys.builtin_module_names or top == "__future__":
        return True
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None) or ""
    stdlib = sysconfig.get_paths()["stdlib"]
    return bool(origin) and origin.startswith(stdlib) and "site-packages" not in origin


@functools.lru_cache(maxsize=1)
def _module_map() -> dict[str, list[str]]:
    """Top-level import name -> distributions providing it (slow: computed once per process)."""
    finder = getattr(metadata, "packages_distributions", None)
    if finder is not None:
        return {k: sorted(set(v)) for k, v in finder().items()}
    found: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        tops = (dist.read_text("top_level.txt") or "").split()
        if not tops:
            for f in dist.files or ():
                parts = f.parts
                if parts and not parts[0].endswith((".dist-info", ".egg-info")) and parts[0] != "..":
                    tops.append(parts[0][:-3] if len(parts) == 1 and parts[0].endswith(".py") else parts[0])
        for top in tops:
            found.setdefault(top, set()).add(name)
    return {k: sorted(v) for k, v in found.items()}


@functools.lru_cache(maxsize=None)
def installed_version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def _local_install(dist: str) -> Optional[str]:
    """The folder or file URL a distribution was installed from, if not from an index."""
    try:
        raw = metadata.distribution(dist).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    url = str(info.get("url", ""))
    if "dir_info" in info or url.startswith("file:"):
        return url
    return None


@functools.lru_cache(maxsize=None)
def _same_name_dist(top: str) -> Optional[str]:
    """The distribution named like the module, if it ships that module (the common case).

    This avoids scanning every installed distribution (``packages_distributions``)
    for ``import blankly``, ``import numpy``, ``import pandas``.
    """
    for candidate in dict.fromkeys((top, top.replace("_", "-"))):
        try:
            dist = metadata.distribution(candidate)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        declared = (dist.read_text("top_level.txt") or "").split()
        if top in declared:
            return dist.metadata["Name"] or candidate
        if not declared:
            for f in dist.files or ():
                parts = f.parts
                if parts and (parts[0] == top or parts[0] == top + ".py"):
                    return dist.metadata["Name"] or candidate
    return None


def distributions_for(module: str) -> list[str]:
    """Installed distributions that provide ``module`` (a dotted import name)."""
    top = module.split(".", 1)[0]
    if "." not in module:
        same = _same_name_dist(top)
        if same is not None:
            return [same]
    dists = _module_map().get(top, [])
    if len(dists) > 1 and "." in module:
        # A namespace package (``google``): keep the ones that ship the submodule.
        prefix = module.replace(".", "/")
        narrowed = []
        for dist in dists:
            try:
                files = metadata.distribution(dist).files or ()
            except metadata.PackageNotFoundError:
                continue
            if any(str(f).startswith((prefix + "/", prefix + ".")) for f in files):
                narrowed.append(dist)
        dists = narrowed or dists
    return list(dists)


# --------------------------------------------------------------------------- requirements

_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?\s*(.*)$")
_EGG = re.compile(r"#egg=([A-Za-z0-9][A-Za-z0-9._-]*)")

RequirementSource = Union[str, Path, Sequence[str], None]


def requirement_name(line: str) -> Optional[str]:
    """The normalised project name a requirement line installs, or None (options, bare URLs)."""
    s = line.strip()
    if not s or s.startswith("-"):
        return None
    if "://" in s.split("@", 1)[0] or s.startswith(("git+", "hg+", "svn+", "bzr+", ".", "/")):
        egg = _EGG.search(s)
        return normalize_name(egg.group(1)) if egg else None
    m = _REQ_NAME.match(s)
    return normalize_name(m.group(1)) if m else None


def _has_specifier(line: str) -> bool:
    m = _REQ_NAME.match(line)
    rest = m.group(3) if m else line
    return bool(rest.strip()) or "://" in line


def read_requirement_lines(source: RequirementSource, _seen: Optional[set[Path]] = None) -> tuple[list[str], list[str]]:
    """Requirement lines from a file path or a list of lines: (lines, problems).

    Comments and blank lines go; ``-r other.txt`` is followed (relative to its file).
    """
    if source is None:
        return [], []
    problems: list[str] = []
    base: Optional[Path] = None
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        seen = _seen if _seen is not None else set()
        try:
            resolved = path.resolve()
            if resolved in seen:
                return [], [f"requirements file {path} includes itself (-r loop)"]
            seen.add(resolved)
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], [f"requirements file {path} does not exist"]
        except (OSError, UnicodeDecodeError) as exc:
            return [], [f"requirements file {path} cannot be read: {exc}"]
        raw_lines = text.splitlines()
        base = path.parent
        _seen = seen
    else:
        raw_lines = [str(x) for x in source]
    lines: list[str] = []
    joined = ""
    for raw in raw_lines:
        if raw.rstrip().endswith("\\"):
            joined += raw.rstrip()[:-1] + " "
            continue
        raw, joined = joined + raw, ""
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        s = re.sub(r"\s+#.*$", "", s)
        nested = re.match(r"^(?:-r|--requirement)(?:\s+|=)(.+)$", s)
        if nested:
            target = Path(nested.group(1).strip())
            if base is not None and not target.is_absolute():
                target = base / target
            more, errs = read_requirement_lines(target, _seen if _seen is not None else set())
            lines.extend(more)
            problems.extend(errs)
            continue
        lines.append(s)
    return lines, problems


def _provides(req_norm: str, module: str) -> bool:
    """Does a requirement name plausibly provide this import (for imports not installed here)?"""
    mod = normalize_name(module)
    flat = mod.replace("-", "")
    return req_norm in (mod, f"python-{mod}", f"py{mod}", f"py-{mod}", f"{mod}-python") or req_norm.replace("-", "") == flat


@dataclass
class Requirements:
    lines: list[str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _major(version: Optional[str]) -> int:
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return 0


def resolve_requirements(
    imports: Iterable[tuple[str, bool, str]],
    *,
    local_modules: Iterable[str] = (),
    user_lines: Sequence[str] = (),
    notebook_lines: Sequence[tuple[str, str]] = (),
) -> Requirements:
    """requirements.txt lines: inferred pins, then ``!pip install`` lines, then the user's (who wins).

    ``imports`` are (dotted module, optional, where); ``notebook_lines`` are (line, where).
    """
    out = Requirements([])
    local = set(local_modules)
    user: dict[str, str] = {}
    extra: list[str] = []
    for line in user_lines:
        name = requirement_name(line)
        if name is None:
            if line not in extra:
                extra.append(line)
        else:
            user[name] = line
    nb: dict[str, str] = {}
    for line, _ in notebook_lines:
        name = requirement_name(line)
        if name is not None:
            nb[name] = line
        elif line not in extra:
            extra.append(line)
    declared = set(user) | set(nb)
    inferred: dict[str, str] = {}
    seen_tops: set[str] = set()
    for module, optional, where in imports:
        top = module.split(".", 1)[0]
        if not top or top in local or is_stdlib(top):
            continue
        dists = distributions_for(top)
        if len(dists) > 1 and "." in module:
            dists = distributions_for(module)  # a shared namespace (``google.protobuf``)
        key = module if len(dists) > 1 else top
        if key in seen_tops:
            continue
        seen_tops.add(key)
        if not dists:
            if any(_provides(name, top) for name in declared):
                continue
            if optional:
                out.notes.append(f"{where}: optional import `{top}` is not installed here; left out of requirements.txt")
                continue
            out.problems.append(
                f"{where}: module `{top}` is imported but no installed distribution provides it; "
                "install it here, or name its distribution in the requirements (--requirements FILE)"
            )
            continue
        if len(dists) > 1:
            out.notes.append(f"`{module}` is provided by {', '.join(dists)}; all are required")
        for dist in dists:
            norm = normalize_name(dist)
            if norm in inferred:
                continue
            version = installed_version(dist)
            inferred[norm] = f"{dist}=={version}" if version else dist
            origin = _local_install(dist) if version else None
            if origin and norm not in declared:
                out.warnings.append(
                    f"{dist} {version} is installed from {origin}, not from a package index; "
                    f"`{dist}=={version}` may not install where the model runs: name it in the requirements"
                )
    # blankly is always there; blankly breaks on numpy 2 (tulipy's compiled ABI).
    if "blankly" not in inferred:
        version = installed_version("blankly")
        inferred["blankly"] = f"blankly=={version}" if version else "blankly"
    np_version = installed_version("numpy")
    if "numpy" in inferred:
        if np_version and _major(np_version) >= 2:
            inferred["numpy"] = "numpy<2"
            out.warnings.append(
                f"numpy {np_version} is installed here, but blankly needs numpy<2: requirements.txt says numpy<2"
            )
    elif "numpy" not in declared:
        inferred["numpy"] = "numpy<2"
        out.notes.append("numpy<2 added: blankly does not work with numpy 2")
    merged = dict(inferred)
    for name, line in nb.items():
        if _has_specifier(line) or name not in merged:
            version = None if _has_specifier(line) else installed_version(line.strip())
            merged[name] = f"{line.strip()}=={version}" if version else line
    merged.update(user)
    out.lines = extra + [merged[k] for k in sorted(merged)]
    return out
