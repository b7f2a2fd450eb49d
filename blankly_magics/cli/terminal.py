"""The CLI as a face of the verbs: it signs in per command and prints what it is told."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Optional

from ..config import ENV_TOKEN, BlanklyConfig
from ..errors import BlanklyError
from ..hints import TERMINAL
from ..progress import PointsBar, StatusLine, UploadBar
from ..workflow.feedback import Feedback


def _print(text: str) -> None:
    print(text, flush=True)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _no_prompt(_: str) -> str:
    from ..auth import SignInError

    raise SignInError(f"no refresh token: set {ENV_TOKEN} (or name a variable with --token-env), "
                      "or run blankly-magics login in a terminal first")


class TerminalFace:
    """Sign-in from the command's options (the embedded local server by default), lines on
    stdout, a tqdm upload bar on stderr, commands spelled ``blankly-magics ...``."""

    def __init__(self, args: argparse.Namespace, config: BlanklyConfig) -> None:
        self.args = args
        self.config = config
        self.bar = UploadBar(f"{getattr(args, 'verb', '')} upload".strip())
        self.points = PointsBar(upload=self.bar)
        self.feedback = Feedback(note=_print, status=StatusLine(in_kernel=False), progress=self.bar, write=_write,
                                 hints=TERMINAL, points=self.points)
        self.prompt: Optional[Callable[[str], str]] = None if sys.stdin.isatty() else _no_prompt
        self._session: Any = None

    def session(self) -> Any:
        if self._session is None:
            from ..verbs.login import sign_in_from

            self._session = sign_in_from(self.args, self.config, self.feedback, self.prompt)
        return self._session

    def current(self) -> Any:
        """The session a saved or given token opens, without asking; None for the local server."""
        from ..verbs.login import sign_in_from

        if not (getattr(self.args, "url", None) or self.config.server_url()):
            return None  # the local server's session ends with the command: nothing to sign out of
        try:
            return sign_in_from(self.args, self.config, self.feedback, _no_prompt)
        except BlanklyError:
            return None

    def notebook(self) -> None:
        return None  # a terminal runs in no notebook: commands name their model

    def close(self) -> None:
        self.bar.close()
        self.points.close()
        if self._session is not None:
            from .. import session as sessions

            sessions.release(self._session)
