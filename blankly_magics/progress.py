"""Upload progress, a sweep's points and a live status line, for the faces that print (the magics and the CLI).

The upload bar and the points bar are ``tqdm.auto``: a widget below a notebook cell, a text bar in a
terminal. The status line updates in place under a kernel (a display handle) and
prints a line each time its state word changes anywhere else.
"""
from __future__ import annotations

from typing import Any, Optional


class UploadBar:
    """The workflow's ``progress(sent, total)``: a tqdm bar opened at the first call."""

    def __init__(self, label: str = "upload") -> None:
        self.label = label
        self.bar: Any = None
        self.sent = 0

    def __call__(self, sent: int, total: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self.label, leave=True)
        if total != self.bar.total:  # the zip's size first, then the whole request body's
            self.bar.total = total
        self.bar.update(max(sent - self.sent, 0))
        self.sent = sent

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PointsBar:
    """The workflow's ``points(finished, total, detail)``: a tqdm bar of a sweep's points, opened at the
    first call, with the failures and the best point so far beside it. The sweep's upload is over by
    then: its bar (``upload``) is closed first, so the two never interleave in a terminal."""

    def __init__(self, label: str = "sweep", upload: Optional[UploadBar] = None) -> None:
        self.label = label
        self.upload = upload
        self.bar: Any = None

    def __call__(self, finished: int, total: int, detail: str) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            if self.upload is not None:
                self.upload.close()

            self.bar = tqdm(total=total, unit="point", desc=self.label, leave=True)
        self.bar.update(max(finished - self.bar.n, 0))
        self.bar.set_postfix_str(detail, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StatusLine:
    """The workflow's ``status(text, word)``: one line updated in place under a kernel,
    else a printed line each time the state word changes."""

    def __init__(self, in_kernel: bool) -> None:
        self.in_kernel = in_kernel
        self.handle: Any = None
        self.last = ""
        self.last_word = ""

    def __call__(self, text: str, word: str = "") -> None:
        if text == self.last:
            return
        self.last = text
        if self.in_kernel:
            from IPython.display import display

            if self.handle is None:
                self.handle = display({"text/plain": text}, raw=True, display_id=True)
            else:
                self.handle.update({"text/plain": text}, raw=True)
        elif word != self.last_word:
            print(text, flush=True)
        self.last_word = word
