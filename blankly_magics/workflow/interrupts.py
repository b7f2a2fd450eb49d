"""What stopping a run means at each stage, worded once for every face.

A stop is Ctrl-C in a notebook or a terminal (``KeyboardInterrupt``), or the
panel's Cancel (``Cancel.request()``, seen as :class:`Interrupted`). Either way:

===================  ==================================================  =========================
stage                what happens                                        the server holds
===================  ==================================================  =========================
before the upload    the run ends                                        nothing new
during the upload    the body stops before its last byte; the server     nothing (it drops a
                     drops what it got                                   partial upload)
upload sent, no      the run stops waiting for the answer; the model     the upload, if it got
answer yet           the upload made is looked up and remembered (or,    there; the next run of
                     if the lookup fails, found by the next run)         the notebook adds to it
waiting for a        the run stops waiting; the backtest goes on         the backtest, running
backtest             (``cancel`` stops it on the server)
waiting for a        the run stops waiting; the points go on (``cancel``  the sweep, its finished
sweep                SWEEP_ID stops those not finished)                  points' results kept
waiting for a live   the run stops waiting; the model goes on getting    the model, deployed
model to start       ready (``stop`` stops it)
following a log      the following stops                                 the run, unchanged
===================  ==================================================  =========================
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional, TypeVar

from ..hints import Hints
from .feedback import Cancel, Interrupted

T = TypeVar("T")
STOPS = (KeyboardInterrupt, Interrupted)  # what a stop looks like, whichever face asked


def before_upload() -> str:
    return "Stopped before the upload: nothing was sent to the server."


def during_upload() -> str:
    return "Upload interrupted: nothing was stored on the server."


SENT = "Interrupted after the upload was sent"


def after_upload_to(name: str, model_id: str, hints: Hints) -> str:
    """The upload went to an existing model: it may be its newest version."""
    return (f"{SENT}: the server may have stored it as a new version of model {name} ({model_id}); "
            f"check with {hints.versions(model_id)}")


def after_upload_found(name: str, model_id: str, version_id: Any, kind: str, hints: Hints) -> str:
    """The upload made a new model, found on the server and remembered."""
    see = hints.backtests(model_id) if kind == "backtest" else hints.status(model_id)
    return (f"{SENT}: the server stored it as model {name} ({model_id}), version {version_id}; the next run "
            f"of this notebook adds a version to that model. Check it with {see}")


def after_upload_unknown(name: str, hints: Hints) -> str:
    """The upload may have made a new model, but it could not be looked up now."""
    return (f"{SENT}: the server may have stored it; check with {hints.versions(name)}. If it did, the next "
            f"run of this notebook adds a version to that model (the one named {name!r} holding this very "
            f"upload) instead of making a second {name!r}.")


def while_waiting(backtest_id: str, hints: Hints) -> str:
    return (f"Stopped waiting. Backtest {backtest_id} keeps running on the server: "
            f"fetch it later with {hints.result(backtest_id)}")


def while_sweeping(sweep_id: str, finished: int, total: int, hints: Hints) -> str:
    return (f"Stopped waiting. Sweep {sweep_id} keeps running on the server ({finished} of {total} points "
            f"finished): see it with {hints.sweep(sweep_id)}, or stop the rest with {hints.cancel(sweep_id)}")


def while_starting(model_id: str, hints: Hints) -> str:
    return (f"Stopped waiting. Model {model_id} keeps starting on the server: "
            f"check it with {hints.status(model_id)}, stop it with {hints.stop(model_id)}")


def while_following(what: str) -> str:
    return f"(stopped following {what})"


class Background:
    """``work()`` on a thread of its own, waited for so that a stop is seen at once.

    A blocking call (an upload waiting for its answer) cannot be interrupted where it
    waits; run there, the caller's thread stays free to notice Ctrl-C or Cancel."""

    def __init__(self, work: Callable[[], T], name: str = "blankly-work") -> None:
        self._box: dict[str, Any] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self._box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._box["error"] = exc
        finally:
            self._done.set()

    def result(self, cancel: Cancel, poll: float = 0.1) -> Any:
        """The work's value (or its exception); Interrupted as soon as a stop is asked for."""
        try:
            while not self._done.wait(poll):
                cancel.check()
        except KeyboardInterrupt:
            raise Interrupted() from None
        if "error" in self._box:
            raise self._box["error"]
        return self._box.get("value")

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the work to end; True if it has."""
        return self._done.wait(timeout)
