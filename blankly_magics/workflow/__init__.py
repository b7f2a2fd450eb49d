"""The workflow layer: every flow from a notebook's cells to a result, in plain Python.

No IPython and no widgets here: the magics, the panel and the CLI read their input,
call these functions, and render what comes back; a script can do the same:

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
``states`` (what a run's state means), ``fetch`` and ``listings`` (results), ``compare``
(backtests side by side), ``logs``, ``activity`` (a live model's orders and account value),
``keys`` (exchange keys kept by the server), ``backtest_args`` (the one parser of backtest
periods and balances), ``params`` (parameter overrides and sweep grids), ``sweeps``
(following a sweep, its table, cancelling it) and ``run`` (the end-to-end flow). Importing
this package is cheap: the client, requests and the pipeline load when first used.
"""
from __future__ import annotations

from .activity import follow_activity, last_orders, read_activity, read_new
from .backtest_args import BacktestArgsError, backtest_args, from_options, parse_balances
from .build import BuildFailed, ModelSource, build_model, python_version, read_notebook, save_zip
from .compare import compare
from .feedback import Cancel, Feedback, Interrupted
from .fetch import deployment_result, fetch_backtest, stop_model
from .keys import KeysError, delete_keys, import_keys, list_keys, set_keys
from .listings import backtests, models, projects, statuses, versions
from .logs import LogCursor, LogSource, backtest_log, follow, model_log, read_all
from .lookup import RunError, choose_plan, find_model_id, resolve_model, resolve_project
from .memory import Memory, server_key
from .params import ParameterError, overrides
from .run import RunRequest, run
from .sweeps import Sweep, cancel_sweep, fetch_sweep, list_sweeps, wait_for_sweep
from .target import Target, choose_target
from .upload import upload
from .waiting import cancel_backtest, wait_for_backtest

__all__ = [
    "BacktestArgsError", "BuildFailed", "Cancel", "Feedback", "Interrupted", "KeysError", "LogCursor", "LogSource",
    "Memory", "ModelSource", "ParameterError", "RunError", "RunRequest", "Sweep", "Target", "backtest_args",
    "backtest_log", "backtests", "build_model", "cancel_backtest", "cancel_sweep", "choose_plan", "choose_target",
    "compare", "delete_keys", "deployment_result", "fetch_backtest", "fetch_sweep", "find_model_id", "follow",
    "follow_activity", "from_options", "import_keys", "last_orders", "list_keys", "list_sweeps", "model_log",
    "models", "overrides", "parse_balances", "projects", "python_version", "read_activity", "read_all", "read_new",
    "read_notebook", "resolve_model", "resolve_project", "run", "save_zip", "server_key", "set_keys", "statuses",
    "stop_model", "upload", "versions", "wait_for_backtest", "wait_for_sweep",
]
