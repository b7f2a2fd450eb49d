"""The workflow layer: every flow from a notebook's cells to a result, in plain Python.

No IPython and no widgets here: the magics, the panel and the CLI read their input,
call these functions, and render what comes back; a script can do the same::

    from blankly_magics import session
    from blankly_magics.workflow import Feedback, ModelSource, RunRequest, run

    signed = session.sign_in()                       # the embedded local server
    result = run(signed, RunRequest(kind="backtest", notebook=nb),
                 ModelSource(nb, backtest_args={"to": "1y"}), Feedback(note=print))
    print(result.metrics)

One module per flow: ``build`` (the export/bundle pipeline), ``target`` and ``memory``
(which model a run goes to; the side file that keeps any face from making a second
model), ``upload`` (progress and the stop policy of ``interrupts``), ``waiting``,
``live`` (a live model while it starts, and followed until its state is final),
``states`` (what a run's state means), ``fetch`` and ``listings`` (results), ``logs``,
``backtest_args`` (the one parser of backtest periods and balances) and ``run`` (the
end-to-end flow). Importing this package is cheap: the client, requests and the
pipeline load when first used.
"""
from __future__ import annotations

from .backtest_args import BacktestArgsError, backtest_args, from_options, parse_balances
from .build import BuildFailed, ModelSource, build_model, python_version, read_notebook, save_zip
from .feedback import Cancel, Feedback, Interrupted
from .fetch import deployment_result, fetch_backtest, stop_model
from .listings import backtests, models, projects, statuses, versions
from .logs import LogCursor, LogSource, backtest_log, follow, model_log, read_all
from .lookup import RunError, choose_plan, find_model_id, resolve_model, resolve_project
from .memory import Memory, server_key
from .run import RunRequest, run
from .target import Target, choose_target
from .upload import upload
from .waiting import cancel_backtest, wait_for_backtest

__all__ = [
    "BacktestArgsError", "BuildFailed", "Cancel", "Feedback", "Interrupted", "LogCursor", "LogSource", "Memory",
    "ModelSource", "RunError", "RunRequest", "Target", "backtest_args", "backtest_log", "backtests",
    "build_model", "cancel_backtest", "choose_plan", "choose_target", "deployment_result", "fetch_backtest",
    "find_model_id", "follow", "from_options", "model_log", "models", "parse_balances", "projects",
    "python_version", "read_all", "read_notebook", "resolve_model", "resolve_project", "run", "save_zip",
    "server_key", "statuses", "stop_model", "upload", "versions", "wait_for_backtest",
]
