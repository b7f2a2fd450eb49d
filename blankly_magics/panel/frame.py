"""The deployment panel: its sections, its worker thread, its status line and results.

``show_panel()`` (also ``blankly_magics.panel()`` and ``%blankly panel``) shows a
``BlanklyPanel``: ipywidgets over the workflow layer, the same flows the magics
and the CLI run. Every build and network call runs on the panel's executor -- one
background thread unless a test injects a synchronous one -- so the kernel stays
usable while a backtest runs. Worker threads write to Output widgets with
``append_stdout``/``append_display_data`` (never ``with out:``, which captures
whatever the main thread prints) and set widget values, which ipywidgets 8 syncs
from any thread. Errors end as one line in the status bar (``BlanklyError``'s own
words, as the magics show them); nothing is raised into the notebook.
"""
from __future__ import annotations

import html
import re
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Type

import ipywidgets as W
from IPython.display import HTML, display

from ..config import BlanklyConfig, active
from ..errors import BlanklyError
from ..hints import PANEL
from ..workflow.feedback import Cancel, Feedback, Points
from .activity import ActivitySection
from .backtest import BacktestSection
from .cells import CellsSection
from .compare import CompareSection
from .deploy import DeploySection
from .keys import KeysSection
from .logs import LogsSection
from .section import Section
from .signin import SignInSection
from .sweep import SweepSection
from .target import TargetSection
from .widgets import fit, show

SECTIONS: tuple[Type[Section], ...] = (SignInSection, TargetSection, BacktestSection, SweepSection, CellsSection,
                                       DeploySection, LogsSection, ActivitySection, KeysSection, CompareSection)
MARKS = {"error": "\u2716 ", "ok": "\u2714 ", "work": "\u22ef "}
COLOURS = {"error": "var(--jp-error-color1,#c62828)", "ok": "var(--jp-success-color1,#2e7d32)"}


class PanelError(BlanklyError):
    """A problem the user fixes in the panel itself (a field, a tick)."""


class BlanklyPanel:
    """The sections and the machinery they share. ``panel.widget`` is the root box."""

    def __init__(
        self,
        *,
        notebook: str | Path | None = None,
        executor: Optional[Executor] = None,
        data_dir: str | Path | None = None,
        confirm_seconds: float = 5.0,
        config: Optional[BlanklyConfig] = None,
        sections: Sequence[Type[Section]] = SECTIONS,
    ) -> None:
        self.config = config or active()  # the magics' %config options when the extension is loaded
        self.data_dir = data_dir
        self.confirm_seconds = confirm_seconds
        self.given_notebook = Path(notebook).expanduser().resolve() if notebook else None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="blankly-panel")
        self._owns_executor = executor is None
        self._busy_lock = threading.Lock()
        self._busy_count = 0
        self._cancel: Optional[Cancel] = None
        self._progress_pct = -1
        self._shown_in: Optional[int] = None
        self.closed = False
        self.last_error: Optional[BaseException] = None
        self.last_result: Any = None
        self.last_note = ""
        self._shared_widgets()
        self.sections = [kind(self) for kind in sections]
        for section in self.sections:
            setattr(self, section.name, section)
        self.widget = self._layout()
        self.session_changed(load=True)

    # ------------------------------------------------------------ layout

    def _shared_widgets(self) -> None:
        self.progress = W.IntProgress(value=0, min=0, max=100, description="Upload",
                                      style={"description_width": "56px"}, layout=W.Layout(width="240px"))
        self.progress.add_class("blankly-panel-upload")
        show(self.progress, False)
        self.cancel_button = W.Button(description="Cancel", icon="times", tooltip="Stop this run")
        self.cancel_button.add_class("blankly-panel-cancel")
        self.cancel_button.on_click(lambda _: self.cancel())
        show(self.cancel_button, False)
        self.status = W.HTML(value="")
        self.status.add_class("blankly-panel-status")
        self.results = W.Output(layout=W.Layout(width="100%", overflow="auto hidden"))
        self.results.add_class("blankly-panel-results")

    def _layout(self) -> W.VBox:
        from .widgets import titled

        form = []
        for section in self.sections:
            widgets = section.form()
            if section.title and widgets:
                section.box = titled(section.title, *widgets)
                form.append(section.box)
        ranked = sorted(self.sections, key=lambda s: s.rank)
        actions = [w for s in ranked for w in s.actions()] + [self.cancel_button, self.progress]
        views = [v for v in (s.view() for s in self.sections) if v is not None]
        root = W.VBox(
            [W.HTML("<div style='font-size:1.15em;font-weight:600'>Blankly deployment</div>"), *form,
             W.HBox(actions, layout=W.Layout(margin="8px 0 0 0", align_items="center", flex_flow="row wrap")),
             self.status, self.results, *views],
            layout=W.Layout(width="100%", max_width="860px", padding="8px 12px",
                            border="1px solid var(--jp-border-color1,#ccc)", overflow="hidden"),
        )
        root.add_class("blankly-panel")
        return root

    @property
    def notebook(self) -> Optional[Path]:
        """The notebook whose cells the panel offers."""
        return getattr(self, "cells").notebook

    def _ipython_display_(self) -> None:
        # show_panel() displayed the widget already; when its return value ends the
        # cell (`%blankly panel`, `blankly_magics.panel()`), do not show it twice.
        if self._shown_in is None or self._shown_in != _execution_count():
            display(self.widget)

    def __repr__(self) -> str:
        from .. import session

        sess = session.current()
        who = f"signed in to {sess.url} as {sess.user_id}" if sess else "not signed in"
        return f"<BlanklyPanel: {who}>"

    def close(self) -> None:
        """Stop background work and remove the widgets."""
        self.closed = True
        self.cancel()
        for section in self.sections:
            section.close()
        if self._owns_executor:
            self._executor.shutdown(wait=False)
        self.widget.close()

    # ------------------------------------------------------------ the session and the mode

    def session_changed(self, load: bool) -> Any:
        """Tell every section who is signed in now; let them load what they show."""
        from .. import session

        sess = session.current()
        for section in self.sections:
            section.on_session(sess)
        if sess is None:
            self.say("Not signed in: tick 'Use the local server' or enter a URL and token, then Sign in.")
        elif load:
            self.submit(lambda: self.load(sess))
        return sess

    def load(self, sess: Any) -> None:
        for section in self.sections:
            section.load(sess)

    def session(self) -> Any:
        """The signed-in session, or a PanelError saying how to sign in."""
        from .. import session

        sess = session.current()
        if sess is None:
            self.session_changed(load=False)
            raise PanelError("Not signed in: sign in above (or run %blankly_login), then try again")
        sign_in = getattr(self, "sign_in", None)
        if sign_in is not None and not sign_in.signed_in_shown:
            self.session_changed(load=False)  # signed in elsewhere (%blankly_login) since the panel showed
        return sess

    def set_mode(self, mode: str) -> None:
        for section in self.sections:
            section.on_mode(mode)

    def run(self, kind: str, backtest_args: Optional[dict] = None, *, points: Optional[Points] = None,
            **request_fields: Any) -> Any:
        """A backtest or a live deployment of what the sections describe, through the workflow's
        ``run`` as the magics and the CLI run it: its result, or None when stopped before the
        server answered (then the status line says what the server holds). ``request_fields``
        set more of the RunRequest (a ``sweep``); ``points`` shows a sweep's progress."""
        import dataclasses

        from ..workflow import run

        sess = self.session()
        target, cells = getattr(self, "target"), getattr(self, "cells")
        request = dataclasses.replace(target.request(kind, backtest_args), **request_fields)
        source = cells.source(backtest_args or None, request.python_version)
        self.clear_results()
        self.say("Building\u2026", "work")
        feedback = self.feedback(upload=True)
        feedback.points = points
        try:
            result = run(sess, request, source, feedback)
        finally:
            show(self.progress, False)  # the upload bar is for the upload only
        target.adopt(getattr(result, "model_id", None))
        if result is None:
            self.say(self.last_note or "Stopped.")
        else:
            self.last_result = result
        return result

    # ------------------------------------------------------------ work off the kernel's thread

    def submit(self, work: Callable[[], None], cancellable: bool = False) -> None:
        """Run ``work`` on the executor with the buttons disabled; never raise. A cancellable
        run shows Cancel, which stops it as Ctrl-C stops the magics' (see workflow.interrupts)."""
        self._set_busy(+1)
        if cancellable:
            self._cancel = Cancel()
            show(self.cancel_button, True)

        def task() -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - the panel reports, the notebook never sees it
                self.fail(exc)
            finally:
                if cancellable:
                    show(self.cancel_button, False)
                self._set_busy(-1)

        try:
            self._executor.submit(task)
        except RuntimeError as exc:  # executor shut down: the panel was closed
            self._set_busy(-1)
            self.fail(PanelError(f"This panel is closed ({exc}); show a new one with %blankly panel"))

    def cancel(self) -> None:
        """Stop the running run (the Cancel button)."""
        if self._cancel is not None:
            self._cancel.request()

    def buttons(self) -> list[W.Button]:
        return [b for s in self.sections for b in s.buttons()]

    def _set_busy(self, delta: int) -> None:
        with self._busy_lock:
            self._busy_count += delta
            busy = self._busy_count > 0
        for button in self.buttons():
            button.disabled = busy

    @property
    def busy(self) -> bool:
        return self._busy_count > 0

    # ------------------------------------------------------------ what the user reads

    def say(self, text: str, kind: str = "info") -> None:
        """Set the status line."""
        colour = COLOURS.get(kind)
        style = f"color:{colour};" if colour else ""
        self.status.value = (f"<div style='{style}white-space:normal;overflow-wrap:anywhere'>"
                             f"{html.escape(MARKS.get(kind, '') + text, quote=False)}</div>")

    @property
    def status_text(self) -> str:
        """The status line as plain text (what the user reads)."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value)).strip()

    def fail(self, exc: BaseException) -> None:
        """Any failure as one status line."""
        self.last_error = exc
        show(self.progress, False)
        self.say(error_line(exc), "error")

    def feedback(self, upload: bool = False) -> Feedback:
        """What a run tells the panel: notes below, progress in the bar, its state in the status line."""
        self.last_note = ""
        if upload:
            self._progress_pct = -1
            self.progress.value = 0
            show(self.progress, True)
        return Feedback(note=self._note, status=lambda text, word: self.say(text + "\u2026", "work"),
                        progress=self._progress if upload else None, hints=PANEL,
                        cancel=self._cancel or Cancel())

    def _note(self, text: str) -> None:
        self.last_note = text
        self.results.append_stdout(text.rstrip("\n") + "\n")

    def _progress(self, sent: int, total: int) -> None:
        pct = 100 if total <= 0 else min(100, int(sent * 100 / total))
        if pct != self._progress_pct:  # one widget update per percent, not per chunk
            self._progress_pct = pct
            self.progress.value = pct

    def clear_results(self) -> None:
        """A new run starts: clear what the last one showed, here and in every section."""
        self.results.outputs = ()  # not clear_output(): that captures the main thread's context
        show(self.progress, False)
        for section in self.sections:
            section.reset()

    def show_html(self, fragment: str) -> None:
        self.results.append_display_data(HTML(fit(fragment)))


def error_line(exc: BaseException) -> str:
    """The panel's one mapping of failures: an expected one (``BlanklyError``) in its own words,
    the line the magics and the CLI show too; anything else named as unexpected."""
    if isinstance(exc, BlanklyError):
        return str(exc)
    return " ".join(f"Unexpected error ({type(exc).__name__}): {exc}".split())


def show_panel(**kwargs: Any) -> BlanklyPanel:
    """Display the deployment panel and return it (kwargs: notebook, executor, data_dir, confirm_seconds,
    config, sections)."""
    panel = BlanklyPanel(**kwargs)
    display(panel.widget)
    panel._shown_in = _execution_count()
    return panel


def _execution_count() -> Optional[int]:
    from IPython import get_ipython

    shell = get_ipython()
    return getattr(shell, "execution_count", None) if shell is not None else None
