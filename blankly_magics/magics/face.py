"""What the magics show while a flow works, below the running cell."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

from ..hints import NOTEBOOK
from ..progress import PointsBar, StatusLine, UploadBar
from ..workflow.feedback import Feedback


def _print(text: str) -> None:
    print(text, flush=True)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class NotebookFace:
    """The magics as a face of the verbs: the current session, lines printed below the cell,
    a status line updated in place, a tqdm upload bar."""

    prompt: Optional[Callable[[str], str]] = None  # sign-in asks with getpass (a password box in Jupyter)

    def __init__(self, magics: Any, upload_label: str = "upload") -> None:
        self.config = magics
        self.bar = UploadBar(upload_label)
        self.points = PointsBar(upload=self.bar)
        in_kernel = getattr(magics.shell, "kernel", None) is not None
        self.feedback = Feedback(note=_print, status=StatusLine(in_kernel), progress=self.bar, write=_write,
                                 hints=NOTEBOOK, points=self.points)

    def session(self) -> Any:
        from .. import session as sessions

        return sessions.require(NOTEBOOK)

    def current(self) -> Any:
        from .. import session as sessions

        return sessions.current()

    def notebook(self) -> Path:
        """The kernel's notebook; with no file found, the working folder's kernel-history entry
        (where ``%%blankly_deploy`` remembers a model it built from the history)."""
        from .. import locate
        from ..workflow.memory import HISTORY

        path, _ = locate.notebook_path(self.config.shell, self.config.notebook)
        return path or Path.cwd() / HISTORY

    def close(self) -> None:
        self.bar.close()
        self.points.close()
