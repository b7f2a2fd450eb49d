"""Find the cells of the notebook a kernel is running.

Tried in order, first hit wins:
  1. an explicit path (``--notebook`` / ``BlanklyConfig.notebook``), then ``BLANKLY_NOTEBOOK_PATH``;
  2. ``__vsc_ipynb_file__`` in the user namespace (VS Code sets it);
  3. the Jupyter server's ``/api/sessions`` matched by this kernel's id (right after renames);
  4. ``__session__`` / ``JPY_SESSION_NAME`` (JupyterLab, Notebook 7; stale after a rename);
  5. the kernel's raw input history, when no file can be found.
Files on disk lag unsaved edits (autosave runs every couple of minutes), so when
the code cells on disk do not match what the kernel ran the caller gets a
one-line note to show, and the cells that were edited (and run) since the save,
so a build error can say it comes from the saved notebook. No IPython import:
the shell is passed in.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from .config import ENV_JUPYTER_SESSION, ENV_NOTEBOOK, environ
from .errors import BlanklyError

STALE_NOTE = "the notebook on disk differs from what you ran: save it (Ctrl-S) to deploy your latest edits"
DEPLOY_MAGIC = "%%blankly_deploy"
_HISTORY_LIMIT = 500  # how many past inputs the staleness check looks at


class LocateError(BlanklyError):
    """An explicit notebook path that cannot be used."""


@dataclass(frozen=True)
class Located:
    """Where the cells came from: ``path`` is None when they came from the history."""

    cells: list
    path: Optional[Path]
    source: str
    note: Optional[str] = None
    edited: tuple[int, ...] = ()  # indices of the cells on disk that were edited and run since the save

    @property
    def name(self) -> Optional[str]:
        return self.path.name if self.path else None

    def describe(self) -> str:
        if self.path is None:
            return (f"No notebook file found (pass --notebook PATH): using the kernel's input history "
                    f"({len(self.cells)} cells)")
        return f"Notebook: {self.path} (found via {self.source})"


# ---------------------------------------------------------------- the path


def _existing(path: Any, base: Optional[Path] = None) -> Optional[Path]:
    if not path:
        return None
    candidate = Path(os.path.expanduser(str(path)))
    if not candidate.is_absolute() and base is not None:
        candidate = base / candidate
    return candidate.resolve() if candidate.is_file() else None


def kernel_id(shell: Any = None) -> Optional[str]:
    """This kernel's id, read from its connection file name (kernel-<id>.json)."""
    connection_file = None
    config = getattr(shell, "config", None)
    if config is not None and "IPKernelApp" in config:
        connection_file = config.IPKernelApp.get("connection_file")
    if not connection_file:
        import sys

        if "ipykernel" in sys.modules:
            try:
                from ipykernel.connect import get_connection_file

                connection_file = get_connection_file()
            except Exception:  # not in a running kernel
                connection_file = None
    if not connection_file:
        return None
    match = re.match(r"kernel-(.+)\.json$", os.path.basename(str(connection_file)))
    return match.group(1) if match else None


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def running_servers(runtime_dir: Optional[str] = None) -> list[dict]:
    """The info files of running Jupyter servers (jpserver-*.json, nbserver-*.json),
    read directly so jupyter_server itself is not imported."""
    if runtime_dir is None:
        try:
            from jupyter_core.paths import jupyter_runtime_dir

            runtime_dir = jupyter_runtime_dir()
        except ImportError:
            return []
    try:
        names = sorted(os.listdir(runtime_dir))
    except OSError:
        return []
    servers = []
    for name in names:
        if not re.match(r"(jp|nb)server-.+\.json$", name):
            continue
        try:
            with open(os.path.join(runtime_dir, name), encoding="utf-8") as handle:
                info = json.load(handle)
        except (OSError, ValueError):
            continue  # being written, or garbage
        if isinstance(info, dict) and info.get("url") and _pid_alive(info.get("pid")):
            servers.append(info)
    return servers


def _sessions(server: dict, timeout: float) -> list:
    import urllib.request

    url = server["url"].rstrip("/") + "/api/sessions"
    request = urllib.request.Request(url)
    if server.get("token"):
        request.add_header("Authorization", f"token {server['token']}")
    # Loopback servers must not go through an HTTP proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as reply:
        data = json.loads(reply.read().decode("utf-8"))
    return data if isinstance(data, list) else []


def path_from_sessions(kid: Optional[str], servers: Sequence[dict], timeout: float = 2.0) -> Optional[Path]:
    """Ask each running Jupyter server which notebook holds kernel ``kid``."""
    if not kid:
        return None
    for server in servers:
        try:
            sessions = _sessions(server, timeout)
        except Exception:  # server gone, wrong token, not JSON: try the next one
            continue
        for session in sessions:
            if not isinstance(session, dict) or (session.get("kernel") or {}).get("id") != kid:
                continue
            rel = session.get("path") or (session.get("notebook") or {}).get("path")
            root = server.get("root_dir") or server.get("notebook_dir") or "."
            found = _existing(rel, Path(root))
            if found:
                return found
    return None


def notebook_path(
    shell: Any, explicit: Optional[str] = None, *, runtime_dir: Optional[str] = None
) -> tuple[Optional[Path], str]:
    """(path, how it was found), or (None, "kernel history"). An explicit path
    that is not a file raises LocateError rather than silently falling back."""
    for value, how in ((explicit, "--notebook"), (environ(ENV_NOTEBOOK), ENV_NOTEBOOK)):
        if value:
            found = _existing(value, Path.cwd())
            if not found:
                raise LocateError(f"notebook not found: {value} (from {how}); pass the path of a saved .ipynb file")
            return found, how
    user_ns = getattr(shell, "user_ns", None) or {}
    found = _existing(user_ns.get("__vsc_ipynb_file__"))
    if found:
        return found, "VS Code"
    servers = running_servers(runtime_dir)
    found = path_from_sessions(kernel_id(shell), servers)
    if found:
        return found, "the Jupyter server"
    session_name = user_ns.get("__session__") or environ(ENV_JUPYTER_SESSION)
    if session_name:
        found = _existing(session_name, Path.cwd())
        for server in servers:
            found = found or _existing(session_name, Path(server.get("root_dir") or "."))
        if found and found.suffix == ".ipynb":
            return found, "__session__"
    return None, "kernel history"


# ---------------------------------------------------------------- the history


def _normalize(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def is_magic_only(source: str) -> bool:
    """A cell of nothing but %magics, !shell lines, comments and blanks (e.g. %load_ext)."""
    lines = [ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return all(ln.startswith(("%", "!")) for ln in lines)


def _is_deploy_cell(source: str) -> bool:
    return source.lstrip().startswith(DEPLOY_MAGIC)


def history_sources(shell: Any) -> list[str]:
    """The kernel's raw inputs worth exporting, oldest first: no %%blankly_deploy
    cells (the current one included), no magics-only cells, each text once."""
    manager = getattr(shell, "history_manager", None)
    raw = list(getattr(manager, "input_hist_raw", None) or [])
    seen: set[str] = set()
    out = []
    for source in raw:
        if not isinstance(source, str) or _is_deploy_cell(source) or is_magic_only(source):
            continue
        key = _normalize(source)
        if key in seen:  # re-running the same text adds nothing; keep its first place
            continue
        seen.add(key)
        out.append(source)
    return out


def _similar(a: str, b: str) -> bool:
    from difflib import SequenceMatcher

    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return matcher.real_quick_ratio() >= 0.5 and matcher.quick_ratio() >= 0.5 and matcher.ratio() >= 0.5


def unsaved(disk_sources: Sequence[str], ran: Sequence[str]) -> list[str]:
    """What the kernel ran that is not on disk and was not later replaced by an
    edited version that is (an earlier draft of a cell the user re-ran does not count)."""
    on_disk = {_normalize(s) for s in disk_sources}
    recent = [_normalize(s) for s in ran][-_HISTORY_LIMIT:]
    found = []
    for i, source in enumerate(recent):
        if not source or source in on_disk:
            continue
        later_saved = [s for s in recent[i + 1:] if s in on_disk]
        if not any(_similar(source, s) for s in later_saved):
            found.append(source)
    return found


def disk_differs(disk_sources: Sequence[str], ran: Sequence[str]) -> bool:
    """True when something the kernel ran is not on disk (see :func:`unsaved`)."""
    return bool(unsaved(disk_sources, ran))


def edited_cells(cells: Sequence[Any], ran_unsaved: Sequence[str]) -> tuple[int, ...]:
    """The code cells on disk that an unsaved source the kernel ran is an edit of (the most
    similar one each); a source like none of them (a new, unsaved cell) names no cell."""
    code = [c for c in cells if c.cell_type == "code"]
    edited = set()
    for source in ran_unsaved:
        scored = [(_ratio(source, _normalize(c.source)), c.index) for c in code]
        best = max(scored, default=(0.0, -1))
        if best[0] >= 0.5:
            edited.add(best[1])
    return tuple(sorted(edited))


def _ratio(a: str, b: str) -> float:
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a, b, autojunk=False).ratio() if _similar(a, b) else 0.0


def locate(shell: Any, explicit: Optional[str] = None, *, runtime_dir: Optional[str] = None) -> Located:
    """The cells to export, where they came from, and a note when the file on
    disk lags what the kernel ran."""
    from .workflow.build import cells_from_sources, read_notebook

    path, how = notebook_path(shell, explicit, runtime_dir=runtime_dir)
    ran = history_sources(shell)
    if path is None:
        return Located(cells=cells_from_sources(ran), path=None, source=how)
    cells = read_notebook(path)
    disk = [
        c.source for c in cells if c.cell_type == "code" and not _is_deploy_cell(c.source) and not is_magic_only(c.source)
    ]
    differs = unsaved(disk, ran) if ran else []
    return Located(cells=list(cells), path=path, source=how, note=STALE_NOTE if differs else None,
                   edited=edited_cells(cells, differs))
