"""The IPython magics: ``%blankly_login``, ``%blankly_logout``, ``%%blankly_deploy``, ``%blankly``.

Loading must stay cheap (``%load_ext`` is timed): only IPython/traitlets pieces,
already imported in any kernel, are imported here; requests, nbformat, widgets,
the server and our own client/bundle modules are imported inside the magics.
Every expected failure is a ``UsageError``: IPython shows it as one line, with
no traceback. Options live as traits (``%config BlanklyMagics.url = ...``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Float, List, Unicode
from traitlets.config.configurable import Configurable

NOT_SIGNED_IN = "not signed in: run %blankly_login first"


# ---------------------------------------------------------------- errors


def _expected_message(exc: BaseException) -> Optional[str]:
    """The one line to show for an expected failure, or None for a real bug.
    Our modules are looked up in sys.modules: if one was never imported, none
    of its exceptions can be in flight."""
    mods = sys.modules
    bundle = mods.get("blankly_magics.bundle")
    if bundle is not None and isinstance(exc, bundle.BuildError):
        problems = list(getattr(exc, "problems", None) or []) or [str(exc)]
        return "cannot build the model: " + "; ".join(" ".join(str(p).split()) for p in problems)
    expected = (
        ("blankly_magics.export", "ExportError"),
        ("blankly_magics.client", "DeploymentError"),
        ("blankly_magics.session", "SignInError"),
        ("blankly_magics.runs", "RunError"),
        ("blankly_magics.locate", "LocateError"),
    )
    for module, name in expected:
        cls = getattr(mods.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return " ".join(str(exc).split())
    requests = mods.get("requests")
    if requests is not None and isinstance(exc, requests.RequestException):
        return f"cannot reach the deployment server: {type(exc).__name__}"
    return None


@contextmanager
def expected_errors(hint: str = "") -> Iterator[None]:
    """Turn our modules' expected exceptions into one-line UsageErrors."""
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        message = _expected_message(exc)
        if message is None:
            raise
        if hint and getattr(exc, "status", 0) is None and "reach" in message:  # no HTTP answer at all
            message += f"; {hint}"
        raise UsageError(message) from None


def _reachability_hint(session: Any) -> str:
    return "run %blankly_login to start the local server again" if getattr(session, "local", False) else ""


# ---------------------------------------------------------------- argument helpers


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line or "")
    except ValueError as exc:
        raise UsageError(f"cannot read the options ({exc}): check the quotes in {line.strip()!r}") from None


def _parse(magic: Any, line: str) -> argparse.Namespace:
    """Parse with the magic's own magic_arguments parser (so `%magic?` shows the
    same help), but split shell-style so quoted JSON and names keep their insides."""
    return magic.parser.parse_args(_split(line))


def _backtest_options_given(args: argparse.Namespace) -> bool:
    return args.args is not None or args.initial is not None or (args.to, args.start, args.end) != (None, None, None)


def backtest_args_from(args: argparse.Namespace) -> Optional[dict]:
    """--args JSON plus the shortcuts (--to, --start, --end, --initial), read by
    ``runs.backtest_args`` exactly as the panel's fields are; None when none was given."""
    if not _backtest_options_given(args):
        return None
    extra: Optional[dict] = None
    if args.args is not None:
        try:
            extra = json.loads(args.args)
        except ValueError as exc:
            raise UsageError(f"--args is not valid JSON ({exc.msg}): give an object, e.g. --args '{{\"to\": \"1y\"}}'") from None
        if not isinstance(extra, dict):
            raise UsageError(f"--args must be a JSON object, e.g. --args '{{\"to\": \"1y\"}}', not {type(extra).__name__}")
    from .runs import BacktestArgsError, backtest_args

    try:
        return backtest_args(start=args.start, end=args.end, to=args.to, initial=args.initial or (), extra=extra)
    except BacktestArgsError as exc:
        raise UsageError(str(exc)) from None


def python_version_from(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    if not re.fullmatch(r"3\.\d{1,2}", value.strip()):
        raise UsageError(f"--python takes a version like 3.11, not {value!r}")
    return value.strip()


class SubcommandParser(argparse.ArgumentParser):
    """argparse that reports problems as UsageErrors instead of exiting the kernel."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if status:
            raise UsageError((message or "").strip() or "bad arguments")
        raise _HelpShown()


class _HelpShown(Exception):
    """--help was printed; nothing else to do."""


def _subcommand_parser() -> SubcommandParser:
    parser = SubcommandParser(
        prog="%blankly",
        description="Look at and manage what is on the deployment server.",
        epilog="See also %blankly_login, %%blankly_deploy? and `%blankly SUBCOMMAND --help`.",
    )
    subs = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=SubcommandParser)
    subs.add_parser("projects", help="list your projects")
    p = subs.add_parser("models", help="list models")
    p.add_argument("--project", metavar="ID_OR_NAME", help="only this project (default: every project)")
    p = subs.add_parser("versions", help="list a model's uploaded versions")
    p.add_argument("--model", metavar="ID_OR_NAME", required=True)
    p.add_argument("--project", metavar="ID_OR_NAME")
    p = subs.add_parser("status", help="live state of every model, or of one with --model")
    p.add_argument("--model", metavar="ID_OR_NAME")
    p.add_argument("--project", metavar="ID_OR_NAME")
    p = subs.add_parser("logs", help="a live model's log, or a backtest's with --backtest")
    p.add_argument("--model", metavar="ID_OR_NAME")
    p.add_argument("--project", metavar="ID_OR_NAME")
    p.add_argument("--backtest", metavar="BACKTEST_ID")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until it stops (or interrupt)")
    p.add_argument("--tail", type=int, default=200, metavar="N", help="show the last N lines (0: all); default 200")
    p = subs.add_parser("stop", help="stop a live model")
    p.add_argument("--model", metavar="ID_OR_NAME", required=True)
    p.add_argument("--project", metavar="ID_OR_NAME")
    p = subs.add_parser("backtests", help="list a model's backtests, newest first")
    p.add_argument("--model", metavar="ID_OR_NAME", required=True)
    p.add_argument("--project", metavar="ID_OR_NAME")
    p = subs.add_parser("result", help="a backtest's metrics, account values and trades")
    p.add_argument("backtest_id", metavar="BACKTEST_ID")
    p.add_argument("--wait", action="store_true", help="wait for it to finish first")
    p = subs.add_parser("cancel", help="cancel a queued or running backtest")
    p.add_argument("backtest_id", metavar="BACKTEST_ID")
    subs.add_parser("panel", help="show the deployment panel (ipywidgets)")
    return parser


# ---------------------------------------------------------------- live feedback


class StatusLine:
    """One line that updates in place: a display handle in a kernel; in a
    terminal shell, a printed line each time the status word changes."""

    def __init__(self, shell: Any) -> None:
        self.in_kernel = getattr(shell, "kernel", None) is not None
        self.handle: Any = None
        self.last = ""
        self.last_word = ""

    def update(self, text: str, word: str = "") -> None:
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


class UploadProgress:
    """The client's progress(sent, total) callback: tqdm.auto if installed,
    else an ipywidgets IntProgress in a kernel, else a few printed lines."""

    def __init__(self, shell: Any, label: str = "upload") -> None:
        self.in_kernel = getattr(shell, "kernel", None) is not None
        self.label = label
        self.bar: Any = None
        self.kind = ""
        self.sent = 0
        self.total = 0
        self.next_print = 0.0

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.sent >= self.total

    def _open(self, total: int) -> None:
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self.label, leave=True)
            self.kind = "tqdm"
            return
        except ImportError:
            pass
        if self.in_kernel:
            try:
                from ipywidgets import IntProgress
                from IPython.display import display

                self.bar = IntProgress(min=0, max=max(total, 1), description=self.label)
                display(self.bar)
                self.kind = "widget"
                return
            except ImportError:
                pass
        self.kind = "text"

    def __call__(self, sent: int, total: int) -> None:
        if self.bar is None and not self.kind:
            self._open(total)
        delta, self.sent, self.total = sent - self.sent, sent, total
        if self.kind == "tqdm":
            self.bar.update(max(delta, 0))
        elif self.kind == "widget":
            self.bar.value = sent
        elif total and (sent / total >= self.next_print or sent >= total):
            print(f"{self.label}: {sent * 100 // total}% of {_size(total)}", flush=True)
            self.next_print = sent / total + 0.25

    def close(self) -> None:
        if self.kind == "tqdm" and self.bar is not None:
            self.bar.close()
        elif self.kind == "widget" and self.bar is not None:
            self.bar.bar_style = "success" if self.finished else "danger"
        self.bar = None


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ---------------------------------------------------------------- the magics


@magics_class
class BlanklyMagics(Magics, Configurable):
    """Deploy and backtest Blankly strategies from notebook cells."""

    url = Unicode(
        None, allow_none=True, config=True,
        help="Deployment server URL. None: BLANKLY_DEPLOY_URL, else the embedded local server.",
    )
    plan_backtest = Unicode(None, allow_none=True, config=True, help="Backtest plan; None: the server's first plan.")
    plan_live = Unicode(None, allow_none=True, config=True, help="Live plan; None: the server's first plan.")
    python = Unicode(
        None, allow_none=True, config=True, help="Python version (X.Y) models run with; None: this kernel's."
    )
    wait = Bool(True, config=True, help="Wait for backtests to finish and show their results.")
    show_chart = Bool(True, config=True, help="Show the equity curve chart with backtest results.")
    poll_interval = Float(
        0.5, config=True,
        help="Seconds between status checks while waiting, once a backtest has been queued or running for "
             "5 s (they are 0.1 s apart before, so a short backtest is seen at once); they grow to 2 s.",
    )
    timeout = Float(
        None, allow_none=True, config=True, help="Stop waiting for a backtest after this many seconds; None: no limit."
    )
    include = List(Unicode(), default_value=[], config=True, help="Extra files or folders put in every model zip.")
    notebook = Unicode(
        None, allow_none=True, config=True,
        help="Notebook file whose cells are deployed; None: found automatically (see %%blankly_deploy?).",
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        Configurable.__init__(self, config=shell.config if shell is not None else None, **kwargs)
        Magics.__init__(self, shell=shell)
        self._subparser: Optional[SubcommandParser] = None

    # ---- sign in ------------------------------------------------------------------------

    def _session(self) -> Any:
        from . import session as sessions

        current = sessions.current()
        if current is None:
            raise UsageError(NOT_SIGNED_IN)
        return current

    @magic_arguments()
    @argument("--url", help="server URL (default: BlanklyMagics.url, BLANKLY_DEPLOY_URL, else the embedded local server)")
    @argument(
        "--token-env", metavar="VAR",
        help="environment variable holding the refresh token (default order: BLANKLY_REFRESH_TOKEN, "
        "the Blankly CLI's auth.json, a hidden prompt)",
    )
    @argument("--browser", action="store_true", help="sign in through the browser (captures the redirect on port 9082)")
    @argument("--data-dir", metavar="DIR", help="data folder of the embedded local server (default: BLANKLY_MAGICS_HOME)")
    @no_var_expand
    @line_magic
    def blankly_login(self, line: str = "") -> None:
        """Sign in to a deployment server, or start and sign in to the embedded local one.

        A token is never taken as an argument (it would be saved in the notebook)
        and never printed.
        """
        args = _parse(self.blankly_login, line)
        from . import session as sessions

        url = args.url or self.url or sessions.configured_url()
        if url and args.data_dir:
            raise UsageError("--data-dir is for the embedded local server: drop --url (or --data-dir)")
        with expected_errors():
            signed = sessions.sign_in(
                url or None, token_env=args.token_env, browser=args.browser, data_dir=args.data_dir, notify=_notify
            )
        who = signed.user_name or signed.user_id
        if signed.local:
            print(f"Signed in to the local deployment server at {signed.url} as {who}")
        else:
            print(f"Signed in to {signed.url} as {who}")

    @line_magic
    def blankly_logout(self, line: str = "") -> None:
        """Sign out: revoke the refresh token and forget it."""
        from . import session as sessions

        current = sessions.current()
        if current is None:
            print("Not signed in.")
            return
        with expected_errors():
            sessions.sign_out()
        print(f"Signed out of {current.url}")

    # ---- deploy -------------------------------------------------------------------------

    @magic_arguments(name="%blankly_deploy")  # usage then reads %%blankly_deploy
    @argument("--backtest", action="store_true", help="backtest the model instead of deploying it live")
    @argument("--name", help="name of a new model (default: the notebook's file name)")
    @argument("--project", metavar="ID_OR_NAME", help="project to use (default: your personal project)")
    @argument(
        "--model", metavar="ID_OR_NAME",
        help="model to add a version to (default: the one this notebook deployed last, or the one its last "
        "unanswered upload made, else a new one)",
    )
    @argument("--plan", help="plan (default: BlanklyMagics.plan_backtest / plan_live, else the server's first)")
    @argument("--python", metavar="X.Y", help="Python version to run with (default: this kernel's)")
    @argument("--message", "-m", help="description of this version (or of the backtest)")
    @argument("--args", metavar="JSON", help="backtest arguments as a JSON object, e.g. '{\"to\": \"1y\"}'")
    @argument("--to", help="backtest length, e.g. 1y, 6M, 30d")
    @argument("--start", metavar="DATE", help="backtest start date (start_date), e.g. 2021-01-01")
    @argument("--end", metavar="DATE", help="backtest end date (end_date)")
    @argument("--initial", metavar="ASSET=AMOUNT", action="append", help="initial holdings, e.g. USD=10000 (repeatable)")
    @argument("--include", metavar="PATH", action="append", default=[], help="extra file or folder to ship (repeatable)")
    @argument("--requirements", metavar="FILE", help="requirements.txt to ship (default: inferred from the imports)")
    @argument("--allow-undefined", metavar="NAME", action="append", default=[],
              help="a name made at run time (by a library, or setattr) that the undefined-name check lets pass "
              "(repeatable; in a cell: `#| blankly: allow-undefined NAME`)")
    @argument("--notebook", metavar="PATH", help="notebook file to take the cells from (default: found automatically)")
    @argument("--dry-run", action="store_true", help="build and show the model, upload nothing")
    @argument("--save", metavar="PATH", help="also write the model zip to PATH")
    @argument("--no-wait", action="store_true", help="do not wait for the backtest to finish")
    @no_var_expand
    @line_cell_magic
    def blankly_deploy(self, line: str = "", cell: Optional[str] = None) -> Any:
        """Deploy (or with --backtest, backtest) this notebook's strategy.

        The cell body is the script's entry point (e.g. `strategy.start()`); it is
        not run here. The strategy comes from the notebook's other cells: those
        marked `#| blankly`, else all code cells. The notebook is found from
        --notebook, BLANKLY_NOTEBOOK_PATH, VS Code, the Jupyter server, or
        __session__; without a file, the kernel's input history is used. Save
        the notebook first: the file on disk is what gets deployed.

        Returns a result object: `r = _` then r.metrics, r.account_values, r.logs().
        """
        if cell is None:
            raise UsageError("%%blankly_deploy is a cell magic: put it (with two %) on the first line of the cell "
                             "holding the entry point, e.g. strategy.start()")
        args = _parse(self.blankly_deploy, line)
        return self._deploy(args, cell)

    def _deploy(self, args: argparse.Namespace, cell: str) -> Any:
        if not cell.strip():
            raise UsageError("the %%blankly_deploy cell is empty: its body is the entry point, e.g. strategy.start()")
        if _backtest_options_given(args) and not args.backtest and not args.dry_run:
            raise UsageError("--args/--to/--start/--end/--initial are backtest options: add --backtest")
        backtest_args = backtest_args_from(args)
        python = python_version_from(args.python or self.python)
        session = None if args.dry_run else self._session()  # offline dry runs need no sign-in
        hint = _reachability_hint(session)

        from . import locate

        with expected_errors():
            found = locate.locate(self.shell, args.notebook or self.notebook)
        print(found.describe())
        if found.note:
            print(f"Note: {found.note}")

        model_id = project_id = None
        name = args.name or (found.path.stem if found.path else "notebook")
        if session is not None:
            with expected_errors(hint):
                model_id, project_id, name = self._target(session, args, found, name)

        with expected_errors():
            from .bundle import build_bundle

            bundle = build_bundle(
                found.cells,
                entry=cell,
                notebook_name=found.name,
                base_dir=found.path.parent if found.path else Path.cwd(),
                include=list(self.include) + list(args.include or []),
                requirements=args.requirements,
                allow_undefined=args.allow_undefined,
                python_version=python,
                backtest_args=backtest_args,
                model_id=model_id,
                project_id=project_id,
            )
            print(bundle.summary())
            if args.save:
                print(f"Saved the model zip to {_write_zip(bundle, args.save)}")
        if args.dry_run:
            self._show_script(bundle)
            return bundle

        assert session is not None
        target = f"model {name} ({model_id})" if model_id else f"a new model {name!r}"
        print(f"Uploading to {target} on {session.url} for a {'backtest' if args.backtest else 'deploy'}...")
        result = self._upload(session, bundle, args, hint, found, name=name, model_id=model_id,
                              project_id=project_id, python_version=python, backtest_args=backtest_args)
        if result is None or not args.backtest:
            if result is not None:
                self._remember(found, session, result.model_id, project_id, name)
            return result
        self._remember(found, session, str(result.get("modelId") or model_id), project_id, name)
        backtest_id = str(result.get("backtestId"))
        print(f"Backtest {backtest_id} queued (model {result.get('modelId')}, version {result.get('versionId')})")
        if args.no_wait or not self.wait:
            from . import runs

            print(f"Not waiting: fetch it with %blankly result {backtest_id}")
            with expected_errors(hint):
                return self._with_chart(runs.fetch_backtest(session, backtest_id))
        return self._wait(session, backtest_id, hint)

    def _upload(
        self, session: Any, bundle: Any, args: argparse.Namespace, hint: str, found: Any, *,
        backtest_args: Optional[dict], **target: Any,
    ) -> Any:
        """Upload with a progress bar: the server's answer for a backtest, a DeployResult
        for a deploy, or None when the user interrupted it.

        An upload that makes a new model is first noted in the side file (runs.remember_pending),
        so that if its answer never comes, the model it made is found again, not made twice."""
        from . import runs

        kind = "backtest" if args.backtest else "deploy"
        progress = UploadProgress(self.shell, label=f"{kind} upload")
        plan = args.plan or (self.plan_backtest if args.backtest else self.plan_live)

        def note_pending(sha256: str) -> None:
            try:
                runs.remember_pending(found.path, session.url, target["name"], target.get("project_id"), sha256)
            except OSError:
                pass  # a read-only folder: the model is still remembered (or said not to be) once it answers

        before = note_pending if not target.get("model_id") else None
        try:
            with expected_errors(hint):
                if args.backtest:
                    return runs.submit_backtest(session, bundle, plan=plan, description=args.message or "",
                                                backtest_args=backtest_args, progress=progress,
                                                before_upload=before, **target)
                return runs.submit_deploy(session, bundle, plan=plan, version_description=args.message or "",
                                          progress=progress, before_upload=before, **target)
        except KeyboardInterrupt:
            progress.close()
            if progress.finished:
                self._interrupted_after_upload(session, bundle, found, args.backtest, target)
            else:
                print("Upload interrupted: nothing was stored on the server.")
            return None
        finally:
            progress.close()

    def _interrupted_after_upload(self, session: Any, bundle: Any, found: Any, backtest: bool, target: dict) -> None:
        """Say what the server holds after an interrupt that came once the zip was sent; when it
        made a new model, find that model (named as asked, holding this very zip) and remember it."""
        from . import runs

        name, model_id, project_id = target["name"], target.get("model_id"), target.get("project_id")
        head = "Interrupted after the upload was sent: the server may have stored it"
        if model_id:
            print(f"{head} as a new version of model {name} ({model_id}); check with %blankly versions --model {model_id}")
            return
        try:
            model = runs.find_uploaded_model(session.client, name, bundle.sha256, project_id)
        except (Exception, KeyboardInterrupt):  # the server gone, or a second interrupt: the next deploy looks again
            model = None
        if model is None:
            print(f"{head}; check with %blankly versions --model {name}. If it did, the next %%blankly_deploy of "
                  f"this notebook adds a version to that model (the one named {name!r} holding this very upload) "
                  f"instead of making a second {name!r}.")
            return
        found_id = runs.model_id_of(model)
        self._remember(found, session, found_id, project_id, name)
        see = f"%blankly backtests --model {found_id}" if backtest else f"%blankly status --model {found_id}"
        print(f"Interrupted after the upload was sent: the server stored it as model {name} ({found_id}), version "
              f"{model.get('versionId')}; running the cell again adds a version to that model. Check it with {see}")

    def _show_script(self, bundle: Any) -> None:
        """The generated script, folded, in a notebook; the way to get it, anywhere."""
        hint = "Dry run: nothing was uploaded. The script is `_.script` (all files: `_.files`; the zip: --save PATH)."
        if getattr(self.shell, "kernel", None) is None:
            print(hint)
            return
        import html

        from IPython.display import display

        lines = bundle.script.count("\n") + 1
        folded = (
            f"<details><summary>{html.escape(bundle.main_script)} ({lines} lines)</summary>"
            f"<pre>{html.escape(bundle.script)}</pre></details><p>{html.escape(hint)}</p>"
        )
        display({"text/plain": hint, "text/html": folded}, raw=True)

    def _target(
        self, session: Any, args: argparse.Namespace, found: Any, name: str
    ) -> tuple[Optional[str], Optional[str], str]:
        """(model id or None for a new model, project id or None, model name)."""
        from . import runs

        client = session.client
        project_id = None
        if args.project:
            project = runs.resolve_project(client, args.project)
            project_id = str(project.get("projectId") or project.get("id"))
        if args.model:
            model = runs.resolve_model(client, args.model, project_id)
            return runs.model_id_of(model), model.get("projectId") or project_id, str(model.get("name") or name)
        last = runs.remembered_model(found.path, session.url)
        if last is not None and not (args.name and args.name != last.get("name")) \
                and not (project_id and project_id != last.get("projectId")):
            try:
                model = client.model_details(last["modelId"], last.get("projectId"))
            except Exception as exc:  # deleted since (404): deploy as a new model
                if getattr(exc, "status", None) != 404:
                    raise
            else:
                return last["modelId"], model.get("projectId") or last.get("projectId"), str(model.get("name") or name)
        return self._unanswered_upload_model(session, found, name, project_id), project_id, name

    def _unanswered_upload_model(self, session: Any, found: Any, name: str, project_id: Optional[str]) -> Optional[str]:
        """Before making a new model: the model this notebook's last upload made if its answer never
        came (an interrupt, a dead kernel). The rule: same notebook and server, same name and project,
        and the model holds that exact zip (sha256); a model merely sharing the name is never taken."""
        from . import runs

        pending = runs.pending_upload(found.path, session.url)
        if pending is None or pending["name"] != name or (pending.get("projectId") or None) != (project_id or None):
            return None
        model = runs.find_uploaded_model(session.client, name, pending["sha256"], project_id)
        if model is None:
            return None  # the server never stored it: a new model after all
        model_id = runs.model_id_of(model)
        sent = runs.when_text(pending.get("sentAt"))
        print(f"Note: the upload sent at {sent} that got no answer made model {name} ({model_id}) on the server: "
              f"adding a version to it instead of making a second {name!r}")
        self._remember(found, session, model_id, project_id, name)
        return model_id

    def _remember(self, found: Any, session: Any, model_id: str, project_id: Optional[str], name: str) -> None:
        from . import runs

        if not model_id:
            return
        try:
            runs.remember_model(found.path, session.url, model_id, project_id, name)
        except OSError as exc:  # a read-only folder must not fail a deploy that worked
            print(f"Note: could not remember the model next to the notebook ({exc.strerror or exc})")

    def _with_chart(self, result: Any) -> Any:
        result.show_chart = self.show_chart
        return result

    def _wait(self, session: Any, backtest_id: str, hint: str = "") -> Any:
        from . import runs
        from .results import BacktestResult

        line = StatusLine(self.shell)
        started = time.monotonic()
        last: dict = {}

        def on_status(status: dict) -> None:
            last.clear()
            last.update(status)
            word = str(status.get("status"))
            line.update(f"Backtest {backtest_id}: {word} ({time.monotonic() - started:.0f} s)", word)

        try:
            with expected_errors(hint):
                result = runs.wait_for_backtest(
                    session, backtest_id, on_status=on_status, poll=self.poll_interval, timeout=self.timeout
                )
        except KeyboardInterrupt:
            print(f"Stopped waiting. Backtest {backtest_id} keeps running on the server: "
                  f"fetch it later with %blankly result {backtest_id}")
            return self._with_chart(BacktestResult.from_api(last or {"backtestId": backtest_id, "status": "unknown"}))
        line.update(f"Backtest {backtest_id}: {result.status} ({time.monotonic() - started:.0f} s)", result.status)
        if not result.done:
            print(f"Still {result.status} after {self.timeout:g} s; it keeps running: %blankly result {backtest_id}")
        return self._with_chart(result)

    # ---- %blankly -----------------------------------------------------------------------

    # No @no_var_expand here: `%blankly logs --model $model_id` should work as in any magic.
    @line_magic
    def blankly(self, line: str = "") -> Any:
        """%blankly SUBCOMMAND [options]: projects, models, versions, status, logs,
        stop, backtests, result, cancel, panel. `%blankly SUBCOMMAND --help` for each."""
        if self._subparser is None:
            self._subparser = _subcommand_parser()
        argv = _split(line)
        if not argv:
            self._subparser.print_help()
            return None
        try:
            args = self._subparser.parse_args(argv)
        except _HelpShown:
            return None
        handler = getattr(self, f"_cmd_{args.command}")
        if args.command == "panel":
            return handler(args)
        session = self._session()
        with expected_errors(_reachability_hint(session)):
            return handler(session, args)

    def _model(self, session: Any, ref: str, project: Optional[str]) -> str:
        from . import runs

        project_id = None
        if project:
            found = runs.resolve_project(session.client, project)
            project_id = str(found.get("projectId") or found.get("id"))
        return runs.model_id_of(runs.resolve_model(session.client, ref, project_id))

    def _cmd_projects(self, session: Any, args: argparse.Namespace) -> Any:
        from .results import Listing

        cols = [("projectId", "id"), ("name", "name"), ("description", "description"), ("createdAt", "created")]
        rows = [dict(p, projectId=p.get("projectId") or p.get("id")) for p in session.client.projects()]
        return Listing("Projects", cols, rows)

    def _cmd_models(self, session: Any, args: argparse.Namespace) -> Any:
        from . import runs
        from .results import Listing

        client = session.client
        if args.project:
            project_ids = [str(runs.resolve_project(client, args.project).get("projectId") or "")]
        else:
            project_ids = [str(p.get("projectId") or p.get("id")) for p in client.projects()]
        rows = [m for pid in project_ids for m in client.models(pid)]
        cols = [("modelId", "id"), ("name", "name"), ("type", "type"), ("projectId", "project"), ("createdAt", "created")]
        return Listing("Models", cols, rows)

    def _cmd_versions(self, session: Any, args: argparse.Namespace) -> Any:
        from .results import Listing

        model_id = self._model(session, args.model, args.project)
        cols = [("versionId", "version"), ("createdAt", "created"), ("description", "description"),
                ("pythonVersion", "python"), ("size", "bytes")]
        return Listing(f"Versions of model {model_id}", cols, session.client.versions(model_id))

    def _cmd_status(self, session: Any, args: argparse.Namespace) -> Any:
        from . import runs
        from .results import Listing

        if args.model:
            return runs.deployment_result(session, self._model(session, args.model, args.project))
        cols = [("modelId", "model"), ("name", "name"), ("state", "state"), ("versionId", "version"), ("since", "since")]
        return Listing("Model status", cols, session.client.status())

    def _cmd_backtests(self, session: Any, args: argparse.Namespace) -> Any:
        from .results import Listing

        model_id = self._model(session, args.model, args.project)
        cols = [("backtestId", "backtest"), ("status", "status"), ("versionId", "version"),
                ("description", "description"), ("createdAt", "created"), ("endedAt", "ended")]
        return Listing(f"Backtests of model {model_id}", cols, session.client.backtests(model_id))

    def _cmd_result(self, session: Any, args: argparse.Namespace) -> Any:
        from . import runs

        if args.wait:
            return self._wait(session, args.backtest_id)
        return self._with_chart(runs.fetch_backtest(session, args.backtest_id))

    def _cmd_cancel(self, session: Any, args: argparse.Namespace) -> None:
        from .results import TERMINAL_STATES

        client = session.client
        status = client.cancel_backtest(args.backtest_id)
        deadline = time.monotonic() + 15  # the server stops the run asynchronously: wait a little for it
        while status.get("status") not in TERMINAL_STATES and time.monotonic() < deadline:
            time.sleep(0.3)
            status = client.backtest_status(args.backtest_id)
        state = status.get("status")
        print(f"Backtest {args.backtest_id}: {state}" + ("" if state in TERMINAL_STATES else " (cancel requested)"))

    def _cmd_stop(self, session: Any, args: argparse.Namespace) -> None:
        model_id = self._model(session, args.model, args.project)
        answer = session.client.kill(model_id)
        print(f"Model {model_id}: {answer.get('state') or answer.get('status')}")

    def _cmd_logs(self, session: Any, args: argparse.Namespace) -> None:
        client = session.client
        if args.backtest:
            fetch = lambda offset: client.backtest_logs(args.backtest, offset=offset)  # noqa: E731
            running = lambda page: not page.get("complete")  # noqa: E731
            what = f"backtest {args.backtest}"
        elif args.model:
            model_id = self._model(session, args.model, args.project)
            fetch = lambda offset: client.model_logs(model_id, offset=offset)  # noqa: E731
            running = lambda page: client.deployment(model_id).get("state") in ("running", "starting")  # noqa: E731
            what = f"model {model_id}"
        else:
            raise UsageError("%blankly logs: give --model ID_OR_NAME or --backtest BACKTEST_ID")
        from .runs import read_log_pages

        if not args.follow:
            text = read_log_pages(fetch)
            lines = text.rstrip("\n").splitlines()
            if args.tail and len(lines) > args.tail:
                print(f"(last {args.tail} of {len(lines)} lines; --tail 0 shows all)")
                lines = lines[-args.tail:]
            print("\n".join(lines) if lines else f"(no log lines yet for {what})")
            return None
        offset = 0
        try:
            while True:
                page = fetch(offset)
                text = page.get("text") or ""
                if text:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                offset = int(page.get("offset") or offset)
                if not text and not running(page):
                    print(f"({what} is not running any more)")
                    return None
                if not text:
                    time.sleep(max(self.poll_interval, 0.2))
        except KeyboardInterrupt:
            print(f"\n(stopped following {what})")
        return None

    def _cmd_panel(self, args: argparse.Namespace) -> Any:
        try:
            from .panel import show_panel
        except ImportError as exc:
            if exc.name in ("blankly_magics.panel", None):
                raise UsageError("the panel is not available in this version of blankly_magics") from None
            raise UsageError(f"the panel needs {exc.name}: pip install {exc.name}") from None
        return show_panel()


def _notify(message: str) -> None:
    """Lines sign-in must show while it waits (the link to open); never a token."""
    print(message, flush=True)


def _write_zip(bundle: Any, path: str) -> Path:
    target = Path(os.path.expanduser(path))
    if target.suffix.lower() != ".zip":
        raise UsageError(f"--save {path}: give a file name ending in .zip, e.g. model.zip")
    return bundle.write_zip(target)  # atomic; ExportError (a UsageError here) names a bad folder


# ---------------------------------------------------------------- extension hooks


def get_magics(shell: Any = None) -> Optional[BlanklyMagics]:
    """The BlanklyMagics instance registered on ``shell`` (the panel reads its options)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return None
    found = shell.magics_manager.registry.get(BlanklyMagics.__name__)
    return found if isinstance(found, BlanklyMagics) else None


def load_ipython_extension(ipython: Any) -> None:
    """Create one BlanklyMagics, register it and make it configurable with %config."""
    if get_magics(ipython) is not None:
        return  # loaded already: keep the instance and its settings
    magics = BlanklyMagics(shell=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)


def unload_ipython_extension(ipython: Any) -> None:
    magics = get_magics(ipython)
    if magics is None:
        return
    manager = ipython.magics_manager
    for kind, names in magics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(BlanklyMagics.__name__, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)


def help_texts() -> dict[str, str]:
    """Each magic's help as ``%name?`` shows it, keyed by how it is typed (``%%blankly_deploy``,
    ``%blankly logs``, ...): the docs' reference pages are generated from these, so they cannot drift."""
    import inspect

    texts = {
        "%blankly_login": inspect.cleandoc(BlanklyMagics.blankly_login.__doc__ or ""),
        "%blankly_logout": inspect.cleandoc(BlanklyMagics.blankly_logout.__doc__ or ""),
        "%%blankly_deploy": inspect.cleandoc(BlanklyMagics.blankly_deploy.__doc__ or ""),
    }
    parser = _subcommand_parser()
    texts["%blankly"] = parser.format_help()
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                texts[f"%blankly {name}"] = sub.format_help()
    return texts
