"""Preparing a run: the platform's variables, the unpacked version, the interpreter it runs with."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from . import envs
from .executor import RunFailed
from .folders import RunFolder, make_private_tree


def platform_vars(
    *, project_id: str, model_id: str, version_id: str, user_id: str, model_type: str
) -> dict[str, str]:
    """The variables the hosted platform gave every model (see the runtime notes)."""
    return {
        "PROJECT_ID": project_id,
        "MODEL_ID": model_id,
        "VERSION_ID": version_id,
        "UID": user_id or project_id,
        "TYPE": "SCREENER" if model_type == "screener" else "STRATEGY",
    }


def unpack(zip_path: Path, folder: RunFolder, owner: Optional[tuple[int, int]] = None) -> Any:
    """Unpack the version into ``folder.model``, private and ``owner``'s; its checked blankly.json info."""
    from ..zipcheck import ZipRejected, inspect_model_zip, safe_extract

    try:
        info = inspect_model_zip(zip_path)
        # safe_extract creates with the umask (and keeps group/other bits of a zip's
        # executable entries), so the copy is tightened once it is all there.
        safe_extract(zip_path, folder.model)
        make_private_tree(folder.model, owner)
    except ZipRejected as exc:
        raise RunFailed(f"the model zip cannot be run: {exc.message}") from None
    except FileNotFoundError:
        raise RunFailed("the version's zip is missing from the server's data dir") from None
    if not (folder.model / info.working_directory).is_dir():
        raise RunFailed(f"blankly.json working_directory {info.working_directory!r} is not a folder in the zip")
    return info


def choose_interpreter(python_version: str, requirements: Path, envs_dir: Path, builder: envs.Builder
                       ) -> envs.Interpreter:
    """The server's own Python when it fits the requirements, else a cached venv (built by ``builder``)."""
    try:
        return envs.select_python(python_version, requirements, envs_dir, builder)
    except envs.EnvError as exc:
        raise RunFailed(str(exc)) from None
