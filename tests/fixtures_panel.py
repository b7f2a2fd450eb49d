"""A panel clicked without a browser: real widgets, a real notebook, work run at the click.

``make_panel(notebook=rsi_notebook, **kwargs)`` makes a BlanklyPanel whose background
work runs synchronously (``InlineExecutor``), so each ``.click()`` has finished when
it returns; ``panel_home`` gives a test a private home and ends its session and
embedded server with it.
"""
from __future__ import annotations

from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

class InlineExecutor(Executor):
    """Runs each job as it is submitted: a click returns when its work is done."""

    def __init__(self) -> None:
        self.jobs = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        self.jobs += 1
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the future, as an executor does
            future.set_exception(exc)
        return future


@pytest.fixture
def panel_home(private_home: Path, tmp_path: Path) -> Iterator[Path]:
    """A private home for the test; its session and embedded server end with it."""
    from blankly_magics import session
    from blankly_magics.embedded import stop_local_server

    yield private_home
    session.sign_out(revoke=False)
    stop_local_server(tmp_path / "bm")


@pytest.fixture
def make_panel(rsi_notebook: Path) -> Iterator[Callable[..., Any]]:
    from blankly_magics.panel import BlanklyPanel

    made: list[BlanklyPanel] = []

    def make(notebook: Path = rsi_notebook, **kwargs: Any) -> BlanklyPanel:
        kwargs.setdefault("executor", InlineExecutor())
        made.append(BlanklyPanel(notebook=notebook, **kwargs))
        return made[-1]

    yield make
    for panel in made:
        panel.close()


def sign_in_with_form(panel: Any, server: Any, user: str = "alice") -> str:
    token = server.refresh_token(user)
    panel.sign_in.local_checkbox.value = False
    panel.sign_in.url_input.value = server.url
    panel.sign_in.token_input.value = token
    panel.sign_in.sign_in_button.click()
    return token


def results_html(panel: Any) -> str:
    return "\n".join(str(out.get("data", {}).get("text/html", "")) + str(out.get("text", ""))
                     for out in panel.results.outputs)


def notes(panel: Any) -> list[str]:
    """The lines a run put in the panel's results (what the magics print below a cell)."""
    text = "".join(str(out.get("text", "")) for out in panel.results.outputs if out.get("output_type") == "stream")
    return text.splitlines()
