"""The deployment panel: sign in, pick a model, backtest or deploy by clicking.

``show_panel()`` (also ``blankly_magics.panel()`` and ``%blankly panel``) shows a
``BlanklyPanel``: ipywidgets over the same functions the magics use (session,
bundle, runs, results). Every build and network call runs on the panel's
executor -- one background thread unless a test injects a synchronous one -- so
the kernel stays usable while a backtest runs. Worker threads write to Output
widgets with ``append_stdout``/``append_display_data`` (never ``with out:``,
which captures whatever the main thread prints) and set widget values, which
ipywidgets 8 syncs from any thread. Errors end as one line in the status bar;
nothing is raised into the notebook.
"""
from __future__ import annotations

import ast
import html
import os
import sys
import threading
import types
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import ipywidgets as W
from IPython.display import HTML, display

__all__ = ["BlanklyPanel", "PanelError", "show_panel"]

LABEL_WIDTH = "104px"
NEW_MODEL = "__new__"  # the model dropdown's value for "+ new model"
MAX_FILES = 200  # files offered for "include"; a folder with more is not a project folder
SKIP_DIRS = {".git", ".ipynb_checkpoints", "__pycache__", "price_caches", ".idea", ".vscode", "node_modules"}
ENTRY_TEMPLATE = "if blankly.is_deployed:\n    {name}.start()\n"


class PanelError(Exception):
    """A problem the user fixes in the panel itself (a field, a tick)."""


# ---------------------------------------------------------------- formatting


def plan_label(name: str, spec: dict[str, Any]) -> str:
    """'nano  -  0.5 CPU, 512 MB RAM' from a plan's cpu (millicores) and ram (MB)."""
    parts = []
    cpu = spec.get("cpu")
    if isinstance(cpu, (int, float)):
        parts.append(f"{cpu / 1000:g} CPU")
    ram = spec.get("ram")
    if isinstance(ram, (int, float)):
        parts.append(f"{round(ram / 1024, 1):g} GB RAM" if ram >= 1024 else f"{ram:g} MB RAM")
    return f"{name} \u2013 {', '.join(parts)}" if parts else name


def error_line(exc: BaseException) -> str:
    """One clear line for the status bar, whatever went wrong."""
    from .auth import SignInError
    from .bundle import BuildError
    from .client import DeploymentError
    from .export import ExportError
    from .runs import RunError

    if isinstance(exc, BuildError):
        problems = list(getattr(exc, "problems", None) or [str(exc)])
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        text = "Cannot build the model: " + "; ".join(problems[:2]) + more
    elif isinstance(exc, (PanelError, DeploymentError, SignInError, RunError)):
        text = str(exc)
    elif isinstance(exc, ExportError):
        text = f"Cannot read the notebook: {exc}"
    else:
        text = f"Unexpected error ({type(exc).__name__}): {exc}"
    return " ".join(text.split())


def strategy_name(sources: Sequence[str]) -> Optional[str]:
    """The variable the cells bind to ``blankly.Strategy(...)``, for the entry point."""
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = node.value.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                target = node.targets[0]
                if called == "Strategy" and isinstance(target, ast.Name):
                    return target.id
    return None


def folder_files(folder: Path) -> list[str]:
    """Files (relative, '/'-separated) a model may include: the folder and its subfolders
    one level down, no notebooks, nothing hidden, no caches. Pruned while walking, so a
    notebook in a big folder (a home directory) costs little."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS) if not rel.parts else []
        for name in sorted(files):
            if name.startswith(".") or name.endswith(".ipynb"):
                continue
            found.append((rel / name).as_posix())
            if len(found) >= MAX_FILES:
                return found
    return found


def _labelled(widget: W.Widget, label: str) -> W.Widget:
    widget.description = label
    widget.style.description_width = LABEL_WIDTH
    widget.layout.width = "auto"
    widget.layout.min_width = "0"
    return widget


def _grid(*children: W.Widget, columns: int = 2) -> W.GridBox:
    # minmax(0, 1fr): columns may shrink below their content, so nothing overflows.
    return W.GridBox(
        list(children),
        layout=W.Layout(
            grid_template_columns=f"repeat({columns}, minmax(0, 1fr))", grid_gap="2px 16px", width="100%"
        ),
    )


def _section(title: str, *children: W.Widget) -> W.VBox:
    head = W.HTML(f"<div style='font-weight:600;border-bottom:1px solid var(--jp-border-color2,#ddd);"
                  f"margin:6px 0 2px 0'>{html.escape(title)}</div>")
    return W.VBox([head, *children], layout=W.Layout(width="100%"))


def _show(widget: W.Widget, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


# ---------------------------------------------------------------- the panel


class BlanklyPanel:
    """The widgets and what their buttons do. ``panel.widget`` is the root box."""

    def __init__(
        self,
        *,
        notebook: str | Path | None = None,
        executor: Optional[Executor] = None,
        data_dir: str | Path | None = None,
        confirm_seconds: float = 5.0,
    ) -> None:
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="blankly-panel")
        self._owns_executor = executor is None
        self._data_dir = data_dir
        self._confirm_seconds = confirm_seconds
        self._quiet = threading.local()  # set while the panel itself changes dropdowns
        self._busy_lock = threading.Lock()
        self._busy_count = 0
        self._armed: Optional[threading.Timer] = None
        self._closed = False
        self._progress_pct = -1
        self._log_offset = 0
        self.deployed_model_id: Optional[str] = None
        self.last_error: Optional[BaseException] = None
        self.last_result: Any = None
        self._shown_in: Optional[int] = None
        self._models_loaded = False
        self._magics = _loaded_magics()
        self.notebook: Optional[Path] = Path(notebook).expanduser().resolve() if notebook else None
        self.cells: list[Any] = []
        self._stale_note: Optional[str] = None  # set when the file on disk lags what the kernel ran
        self._cell_boxes: list[W.Checkbox] = []
        self._build_widgets()
        self._load_cells()
        self._refresh_session(load=True)

    # ------------------------------------------------------------ layout

    def _build_widgets(self) -> None:
        self._args_section = _section("Backtest period and balances", self._build_args())
        self.widget = W.VBox(
            [
                W.HTML("<div style='font-size:1.15em;font-weight:600'>Blankly deployment</div>"),
                _section("Sign in", *self._build_sign_in()),
                _section("Target", *self._build_target()),
                self._args_section,
                _section("Cells to export", *self._build_cells()),
                *self._build_feedback(),
            ],
            layout=W.Layout(width="100%", max_width="860px", padding="8px 12px",
                            border="1px solid var(--jp-border-color1,#ccc)", overflow="hidden"),
        )
        self.widget.add_class("blankly-panel")

        self.sign_in_button.on_click(self._on_sign_in)
        self.sign_out_button.on_click(self._on_sign_out)
        self.refresh_button.on_click(lambda _: self._submit(self._load_targets))
        self.reload_button.on_click(lambda _: self._load_cells())
        self.preview_button.on_click(lambda _: self._submit(self._preview))
        self.backtest_button.on_click(lambda _: self._submit(self._backtest))
        self.deploy_button.on_click(self._on_deploy)
        self.logs_button.on_click(lambda _: self._submit(self._fetch_logs))
        self.stop_button.on_click(lambda _: self._submit(self._stop))
        self.local_checkbox.observe(self._on_local, names="value")
        self.mode.observe(self._on_mode, names="value")
        self.project_dd.observe(self._on_project, names="value")
        self.model_dd.observe(self._on_model, names="value")
        self._on_local(None)
        self._on_mode(None)
        self._on_model(None)

    def _build_sign_in(self) -> list[W.Widget]:
        """Who is signed in, or a form; the token lives in a Password widget only until used."""
        from . import session

        self.who = W.HTML()
        self.sign_out_button = W.Button(description="Sign out", icon="sign-out", layout=W.Layout(width="auto"))
        self.signed_in_box = W.HBox([self.who, self.sign_out_button],
                                    layout=W.Layout(justify_content="space-between", align_items="center"))
        configured = self._option("url") or session.configured_url()
        self.local_checkbox = W.Checkbox(value=not configured, description="Use the local server", indent=False)
        self.url_input = _labelled(W.Text(value=configured or "", placeholder="https://deploy.example.com"),
                                   "Server URL")
        self.token_input = _labelled(W.Password(placeholder="refresh token"), "Token")
        self.sign_in_button = W.Button(description="Sign in", button_style="primary", icon="sign-in")
        self.remote_box = _grid(self.url_input, self.token_input)
        self.sign_in_form = W.VBox([
            W.HBox([self.local_checkbox, self.sign_in_button],
                   layout=W.Layout(justify_content="space-between", align_items="center")),
            self.remote_box,
        ])
        return [self.signed_in_box, self.sign_in_form]

    def _build_target(self) -> list[W.Widget]:
        self.project_dd = _labelled(W.Dropdown(options=[]), "Project")
        self.model_dd = _labelled(W.Dropdown(options=[("+ new model", NEW_MODEL)], value=NEW_MODEL), "Model")
        self.model_name = _labelled(W.Text(placeholder="name of the new model"), "New model")
        self.plan_dd = _labelled(W.Dropdown(options=[]), "Plan")
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        versions = sorted({here, "3.9", "3.10", "3.11", "3.12"}, key=lambda v: tuple(map(int, v.split("."))))
        chosen = self._option("python") or here
        versions = sorted(set(versions) | {chosen}, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))
        self.python_dd = _labelled(W.Dropdown(options=versions, value=chosen), "Python")
        self.refresh_button = W.Button(icon="refresh", tooltip="Reload projects, models and plans",
                                       layout=W.Layout(width="36px"))
        self.mode = W.ToggleButtons(options=[("Backtest", "backtest"), ("Deploy live", "live")],
                                    value="backtest", style={"button_width": "110px"})
        self.mode.add_class("blankly-panel-mode")
        self.description = _labelled(W.Text(placeholder="what changed in this version"), "Description")
        return [
            W.HBox([self.mode, self.refresh_button],
                   layout=W.Layout(justify_content="space-between", align_items="center")),
            _grid(self.project_dd, self.model_dd, self.plan_dd, self.model_name, self.python_dd, self.description),
        ]

    def _build_args(self) -> W.Widget:
        """The kwargs of Blankly's strategy.backtest(): a period and initial balances."""
        self.start_input = _labelled(W.Text(placeholder="YYYY-MM-DD"), "Start")
        self.end_input = _labelled(W.Text(placeholder="YYYY-MM-DD"), "End")
        self.to_input = _labelled(W.Text(placeholder="or a span: 1y, 6M"), "Or 'to'")
        self.initial_input = _labelled(W.Text(placeholder="USD=10000"), "Initial")
        for name in ("start", "end", "to", "initial"):
            getattr(self, f"{name}_input").add_class(f"blankly-panel-{name}")
        return _grid(self.start_input, self.end_input, self.to_input, self.initial_input)

    def _build_cells(self) -> list[W.Widget]:
        """The notebook's code cells to tick, the entry point, extra files."""
        self.cells_box = W.VBox(layout=W.Layout(max_height="190px", overflow="hidden auto", width="auto",
                                                border="1px solid var(--jp-border-color2,#ddd)",
                                                padding="2px 6px"))
        self.reload_button = W.Button(description="Reload cells", icon="refresh", tooltip="Read the notebook again",
                                      layout=W.Layout(width="auto", flex="0 0 auto"))
        self.notebook_label = W.HTML(layout=W.Layout(flex="1 1 auto", min_width="0"))
        self.entry_input = _labelled(W.Textarea(rows=3, placeholder="code run last, e.g. strategy.start()"),
                                     "Entry point")
        self.files_select = _labelled(W.SelectMultiple(options=[], rows=3), "Include")
        return [
            W.HBox([self.notebook_label, self.reload_button],
                   layout=W.Layout(justify_content="space-between", align_items="center")),
            self.cells_box, self.entry_input, self.files_select,
        ]

    def _build_feedback(self) -> list[W.Widget]:
        """Buttons, upload progress, the status line, results, and a deployment's Logs/Stop."""
        self.preview_button = W.Button(description="Preview", icon="eye")
        self.backtest_button = W.Button(description="Backtest", button_style="primary", icon="line-chart")
        self.deploy_button = W.Button(description="Deploy live", button_style="warning", icon="rocket",
                                      layout=W.Layout(width="190px"))  # room for "Confirm deploy live"
        for name in ("preview", "backtest", "deploy"):
            getattr(self, f"{name}_button").add_class(f"blankly-panel-{name}")
        self.progress = W.IntProgress(value=0, min=0, max=100, description="Upload",
                                      style={"description_width": "56px"}, layout=W.Layout(width="240px"))
        _show(self.progress, False)
        self.status = W.HTML(value="")
        self.status.add_class("blankly-panel-status")

        self.results = W.Output(layout=W.Layout(width="100%", overflow="auto hidden"))
        self.results.add_class("blankly-panel-results")
        self.logs_button = W.Button(description="Logs", icon="file-text-o")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger")
        self.deployment_bar = W.HBox([self.logs_button, self.stop_button])
        _show(self.deployment_bar, False)
        self.logs = W.Output(layout=W.Layout(width="100%", max_height="240px", overflow="hidden auto"))
        return [
            W.HBox([self.preview_button, self.backtest_button, self.deploy_button, self.progress],
                   layout=W.Layout(margin="8px 0 0 0", align_items="center", flex_flow="row wrap")),
            self.status, self.results, self.deployment_bar, self.logs,
        ]

    def _option(self, name: str, default: Any = None) -> Any:
        """A ``%config BlanklyMagics.<name>`` setting, so panel and magics agree; ``default`` when unset."""
        value = getattr(self._magics, name, None)
        return default if value is None else value

    @property
    def _action_buttons(self) -> list[W.Button]:
        return [self.sign_in_button, self.sign_out_button, self.refresh_button, self.reload_button,
                self.preview_button, self.backtest_button, self.deploy_button, self.logs_button, self.stop_button]

    def _ipython_display_(self) -> None:
        # show_panel() displayed the widget already; when its return value ends the
        # cell (`%blankly panel`, `blankly_magics.panel()`), do not show it twice.
        if self._shown_in is None or self._shown_in != _execution_count():
            display(self.widget)

    def __repr__(self) -> str:
        from . import session

        sess = session.current()
        who = f"signed in to {sess.url} as {sess.user_id}" if sess else "not signed in"
        return f"<BlanklyPanel: {who}>"

    def close(self) -> None:
        """Stop background work and remove the widgets."""
        self._closed = True
        self._disarm()
        if self._owns_executor:
            self._executor.shutdown(wait=False)
        self.widget.close()

    # ------------------------------------------------------------ threading

    def _submit(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the executor with the buttons disabled; never raise."""
        self._set_busy(+1)

        def task() -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - the panel reports, the notebook never sees it
                self._fail(exc)
            finally:
                self._set_busy(-1)

        try:
            self._executor.submit(task)
        except RuntimeError as exc:  # executor shut down: the panel was closed
            self._set_busy(-1)
            self._fail(PanelError(f"This panel is closed ({exc}); show a new one with %blankly panel"))

    def _set_busy(self, delta: int) -> None:
        with self._busy_lock:
            self._busy_count += delta
            busy = self._busy_count > 0
        for button in self._action_buttons:
            button.disabled = busy

    @property
    def busy(self) -> bool:
        return self._busy_count > 0

    def _set_status(self, text: str, kind: str = "info") -> None:
        color = {"error": "var(--jp-error-color1,#c62828)", "ok": "var(--jp-success-color1,#2e7d32)"}.get(kind)
        mark = {"error": "\u2716 ", "ok": "\u2714 ", "work": "\u22ef "}.get(kind, "")
        style = f"color:{color};" if color else ""
        self.status.value = (f"<div style='{style}white-space:normal;overflow-wrap:anywhere'>"
                             f"{html.escape(mark + text, quote=False)}</div>")

    @property
    def status_text(self) -> str:
        """The status line as plain text (what the user reads)."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value)).strip()

    def _fail(self, exc: BaseException) -> None:
        self.last_error = exc
        _show(self.progress, False)
        self._set_status(error_line(exc), "error")

    # ------------------------------------------------------------ sign-in

    def _refresh_session(self, load: bool) -> Any:
        """Show who is signed in (or the form); load the pickers when asked."""
        from . import session

        sess = session.current()
        _show(self.signed_in_box, sess is not None)
        _show(self.sign_in_form, sess is None)
        if sess is None:
            self.who.value = ""
            self._set_options(self.project_dd, [])
            self._set_options(self.model_dd, [("+ new model", NEW_MODEL)])
            self._set_options(self.plan_dd, [])
            self._models_loaded = False
            self._on_model(None)
            self._set_status("Not signed in: tick 'Use the local server' or enter a URL and token, then Sign in.")
        else:
            where = "the local server" if getattr(sess, "local", False) else "server"
            self.who.value = (f"Signed in to {where} <code>{html.escape(str(sess.url))}</code> "
                              f"as <b>{html.escape(str(sess.user_name or sess.user_id))}</b>")
            if load:
                self._submit(self._load_targets)
        return sess

    def _on_local(self, _change: Any) -> None:
        _show(self.remote_box, not self.local_checkbox.value)

    def _on_sign_in(self, _button: Any) -> None:
        use_local = self.local_checkbox.value
        url = self.url_input.value.strip()
        token = self.token_input.value
        self.token_input.value = ""  # the widget (and the notebook's widget state) never keeps it
        self._submit(lambda: self._sign_in(use_local, url, token))

    def _sign_in(self, use_local: bool, url: str, token: str) -> None:
        from . import session

        if use_local:
            self._set_status("Starting the local server and signing in\u2026", "work")
            session.sign_in(None, data_dir=self._data_dir)
        else:
            if not url:
                raise PanelError("Enter the server URL, or tick 'Use the local server'")

            def prompt(*_args: Any, **_kwargs: Any) -> str:
                # No token typed and none in $BLANKLY_REFRESH_TOKEN or the Blankly CLI's file:
                # a worker thread cannot show getpass, so say where to put it.
                raise PanelError("Paste your refresh token in the Token field, then Sign in")

            self._set_status(f"Signing in to {url}\u2026", "work")
            try:
                # Handed over as an argument: an environment variable would reach every
                # process started meanwhile (the embedded server, a backtest's Python).
                session.sign_in(url, token=token.strip() or None, prompt=prompt)
            except Exception as exc:
                # A server that echoes the token back must not put it on screen.
                secret = token.strip()
                raise PanelError(error_line(exc).replace(secret, "***") if secret else error_line(exc)) from None
        self._refresh_session(load=False)
        self._load_targets()

    def _on_sign_out(self, _button: Any) -> None:
        def work() -> None:
            from . import session

            session.sign_out()
            self._refresh_session(load=False)

        self._submit(work)

    def _require_session(self) -> Any:
        from . import session

        sess = session.current()
        if sess is None:
            self._refresh_session(load=False)
            raise PanelError("Not signed in: sign in above (or run %blankly_login), then try again")
        if self.signed_in_box.layout.display == "none":
            self._refresh_session(load=False)  # signed in elsewhere (%blankly_login) since the panel showed
        return sess

    # ------------------------------------------------------------ pickers

    def _set_options(self, dropdown: W.Dropdown, options: list[tuple[str, Any]], keep: Any = None) -> None:
        self._quiet.on = True
        try:
            dropdown.options = options
            values = [value for _, value in options]
            if keep in values:
                dropdown.value = keep
            elif values and dropdown.index is None:
                dropdown.index = 0  # a dropdown that started empty selects nothing by itself
        finally:
            self._quiet.on = False

    def _load_targets(self) -> None:
        sess = self._require_session()
        self._set_status("Loading projects, models and plans\u2026", "work")
        projects = sess.client.projects()
        options = []
        for project in projects:
            pid = project.get("id") or project.get("projectId")
            name = str(project.get("name") or pid)
            personal = " (personal)" if pid == sess.user_id and "personal" not in name.lower() else ""
            options.append((name + personal, pid))
        keep = self.project_dd.value if self.project_dd.value is not None else sess.user_id
        self._set_options(self.project_dd, options, keep=keep)
        self._load_models()
        self._load_plans()
        self._set_status("Ready.", "ok")

    def _load_models(self, select: Optional[str] = None) -> None:
        from . import runs

        sess = self._require_session()
        if select is None and not self._models_loaded:
            # First fill: the model this notebook used last on this server, as the magics do.
            remembered = runs.remembered_model(self.notebook, sess.url) or {}
            select = remembered.get("modelId")
        models = sess.client.models(self.project_dd.value)
        options = [("+ new model", NEW_MODEL)]
        for model in models:
            mid = model.get("id") or model.get("modelId")
            options.append((f"{model.get('name') or mid}", mid))
        self._set_options(self.model_dd, options, keep=select or self.model_dd.value)
        self._models_loaded = True
        self._on_model(None)

    def _load_plans(self) -> None:
        sess = self._require_session()
        live = self.mode.value == "live"
        plans = sess.client.plans("live" if live else "backtesting")
        self._set_options(self.plan_dd, [(plan_label(name, spec or {}), name) for name, spec in plans.items()],
                          keep=self.plan_dd.value or self._option("plan_live" if live else "plan_backtest"))

    def _on_project(self, change: Any) -> None:
        if not getattr(self._quiet, "on", False):
            self._submit(self._load_models)

    def _on_model(self, _change: Any) -> None:
        _show(self.model_name, self.model_dd.value == NEW_MODEL)

    def _on_mode(self, change: Any) -> None:
        live = self.mode.value == "live"
        _show(self._args_section, not live)
        _show(self.backtest_button, not live)
        _show(self.deploy_button, live)
        self._disarm()
        if change is not None and self.plan_dd.options:
            self._submit(self._load_plans)

    # ------------------------------------------------------------ cells

    def _load_cells(self) -> None:
        """Read the notebook's cells and offer its code cells, ticked per the export rules."""
        from . import export

        self.cells, where, problem = [], None, None
        self._stale_note = None
        try:
            if self.notebook is not None:
                self.cells, where = export.read_notebook(self.notebook), self.notebook
            else:
                self.cells, where = self._locate_cells()
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            problem = error_line(exc)
        boxes = []
        for choice in export.preview_cells(self.cells) if self.cells else []:
            box = W.Checkbox(value=bool(choice.exported), indent=False,
                             description=f"cell {choice.index}: {choice.first_line}",
                             description_allow_html=False, layout=W.Layout(width="auto", height="24px"))
            box.cell_index = choice.index
            box.tooltip = str(choice.reason or "")
            boxes.append(box)
        for old in self._cell_boxes:
            old.close()
        self._cell_boxes = boxes
        self.cells_box.children = boxes or [W.HTML(f"<i>{html.escape(problem or 'No code cells found.')}</i>")]
        if isinstance(where, Path):
            # One line, cut with an ellipsis when the folder is long; the whole path on hover.
            self.notebook_label.value = (
                f"<div title='{html.escape(str(where))}' style='white-space:nowrap;overflow:hidden;"
                f"text-overflow:ellipsis'>From <code>{html.escape(where.name)}</code> in "
                f"<code>{html.escape(str(where.parent))}</code></div>")
        else:
            self.notebook_label.value = (f"From {html.escape(where)}" if where
                                         else "<i>Notebook not found: show_panel(notebook='path.ipynb')</i>")
        if self._stale_note:
            self.notebook_label.value += f"<br><span style='color:#9a6700'>{html.escape(self._stale_note)}</span>"
        ticked = set(self.selected_cells)
        if not self.entry_input.value.strip():
            name = strategy_name([cell.source for cell in self.cells if cell.index in ticked])
            self.entry_input.value = ENTRY_TEMPLATE.format(name=name) if name else ""
        # Data files the code names are taken by the build itself; this list is for the others.
        base = self.base_dir
        self.files_select.options = folder_files(base) if base else []
        if problem:
            self._set_status(problem, "error")

    def _locate_cells(self) -> tuple[list[Any], Any]:
        from IPython import get_ipython

        from . import locate

        found = locate.locate(get_ipython(), self._option("notebook"))
        self.notebook = found.path
        self._stale_note = found.note
        return list(found.cells), found.path or "the kernel's input history"

    @property
    def base_dir(self) -> Optional[Path]:
        return self.notebook.parent if self.notebook else None

    @property
    def selected_cells(self) -> list[int]:
        return [box.cell_index for box in self._cell_boxes if box.value]

    # ------------------------------------------------------------ actions

    def _target(self) -> dict[str, Any]:
        new = self.model_dd.value in (None, NEW_MODEL)
        name = self.model_name.value.strip() or (self.notebook.stem if self.notebook else "strategy")
        return {
            "plan": self.plan_dd.value,
            "name": name if new else None,
            "model_id": None if new else self.model_dd.value,
            "project_id": self.project_dd.value,
            "python_version": self.python_dd.value,
        }

    def _args(self) -> dict[str, Any]:
        """The kwargs of Blankly's ``strategy.backtest()`` from the fields, read as the magics read
        --start/--end/--to/--initial; a mistake is a BacktestArgsError for the status line."""
        from .runs import backtest_args

        return backtest_args(start=self.start_input.value, end=self.end_input.value, to=self.to_input.value,
                             initial=self.initial_input.value)

    def build(self, args: Optional[dict[str, Any]] = None) -> Any:
        """The Bundle the ticked cells, entry point and files make (no network)."""
        from .bundle import build_bundle

        if not self.cells:
            raise PanelError("No notebook cells: pass show_panel(notebook='path.ipynb') or save the notebook")
        if not self.selected_cells:
            raise PanelError("No cells ticked: tick the cells that make the strategy")
        target = self._target()
        base = self.base_dir
        picked = [base / name for name in self.files_select.value] if base else []
        return build_bundle(
            self.cells,
            entry=self.entry_input.value.strip() or None,
            notebook_name=self.notebook.name if self.notebook else None,
            base_dir=base,
            include=picked + list(self._option("include", [])),  # plus %config BlanklyMagics.include
            python_version=target["python_version"],
            backtest_args=args,
            model_id=target["model_id"],
            project_id=target["project_id"],
            select=self.selected_cells,
        )

    def _preview(self) -> None:
        self._set_status("Building\u2026", "work")
        bundle = self.build(self._args() or None)
        self._clear_results()
        self.results.append_stdout(bundle.summary().rstrip() + "\n")
        kb = bundle.total_size / 1024
        self._set_status(f"Preview: {len(bundle.files)} files, {kb:.1f} KB; nothing uploaded.", "ok")

    def _progress(self, sent: int, total: int) -> None:
        pct = 100 if total <= 0 else min(100, int(sent * 100 / total))
        if pct != self._progress_pct:  # one widget update per percent, not per chunk
            self._progress_pct = pct
            self.progress.value = pct

    def _start_upload(self) -> None:
        self._progress_pct = -1
        self.progress.value = 0
        _show(self.progress, True)

    def _backtest(self) -> None:
        from . import runs

        sess = self._require_session()
        args = self._args()
        self._set_status("Building\u2026", "work")
        bundle = self.build(args or None)
        target = self._target()
        self._set_status("Uploading\u2026", "work")
        self._start_upload()
        reply = runs.submit_backtest(sess, bundle, plan=target["plan"], name=target["name"],
                                     model_id=target["model_id"], project_id=target["project_id"],
                                     description=self.description.value.strip(), backtest_args=args or None,
                                     python_version=target["python_version"], progress=self._progress)
        self.progress.value = 100
        bid = reply["backtestId"]
        self._adopt_model(sess, reply.get("modelId"), target["name"])
        self._set_status(f"Backtest {bid}: queued\u2026", "work")

        def on_status(status: Any) -> None:
            if self._closed:
                raise PanelError("panel closed")
            state = status.get("status") if isinstance(status, dict) else status
            self._set_status(f"Backtest {bid}: {state}\u2026", "work")

        result = runs.wait_for_backtest(sess, bid, on_status=on_status, poll=self._option("poll_interval", 0.5),
                                        timeout=self._option("timeout"))
        self._show_backtest(result)

    def _show_backtest(self, result: Any) -> None:
        self.last_result = result
        self._clear_results()
        # The metrics table, trades and (unless %config BlanklyMagics.show_chart = False) the equity chart.
        # No "r = _ ..." hints: those are for the magics' cells; here the buttons do the work.
        self.results.append_display_data(HTML(_fit(result.to_html(chart=self._option("show_chart", True),
                                                                  hints=False))))
        if result.ok:  # the numbers are in the results below; the status line stays short
            self._set_status(f"Backtest {result.backtest_id} completed: {result.trade_count} trades.", "ok")
        elif not result.done:  # BlanklyMagics.timeout passed: it runs on, the server keeps the result
            self._set_status(f"{result.headline()}; see it later with %blankly result {result.backtest_id}")
        else:
            self._set_status(result.headline(), "error")

    def _on_deploy(self, _button: Any) -> None:
        if self._armed is None:
            # Going live spends money and trades: one confirmation click, for a few seconds.
            self.deploy_button.description = "Confirm deploy live"
            self.deploy_button.button_style = "danger"
            self._set_status(f"Click 'Confirm deploy live' within {self._confirm_seconds:g} s to go live.")
            timer = threading.Timer(self._confirm_seconds, self._disarm)
            timer.daemon = True
            self._armed = timer
            timer.start()
            return
        self._disarm()
        self._submit(self._deploy)

    def _disarm(self) -> None:
        timer, self._armed = self._armed, None
        if timer is not None:
            timer.cancel()
        self.deploy_button.description = "Deploy live"
        self.deploy_button.button_style = "warning"

    def _deploy(self) -> None:
        from . import runs

        sess = self._require_session()
        self._set_status("Building\u2026", "work")
        bundle = self.build()
        target = self._target()
        self._set_status("Uploading\u2026", "work")
        self._start_upload()
        result = runs.submit_deploy(sess, bundle, plan=target["plan"], name=target["name"],
                                    model_id=target["model_id"], project_id=target["project_id"],
                                    description=self.description.value.strip(),
                                    python_version=target["python_version"], progress=self._progress)
        self.progress.value = 100
        self.last_result = result
        self.deployed_model_id = result.model_id
        self._log_offset = 0
        self._adopt_model(sess, result.model_id, target["name"])
        self._clear_results()
        self.results.append_display_data(HTML(_fit(result.to_html(hints=False))))  # Logs/Stop are buttons here
        _show(self.deployment_bar, True)
        self._set_status(f"Deployed model {result.model_id} version {result.version_id}: {result.status}.", "ok")

    def _fetch_logs(self) -> None:
        sess = self._require_session()
        if not self.deployed_model_id:
            raise PanelError("Nothing deployed from this panel yet")
        reply = sess.client.model_logs(self.deployed_model_id, offset=self._log_offset)
        text = reply.get("text") or ""
        self._log_offset = reply.get("offset", self._log_offset)
        if text:
            self.logs.append_stdout(text)
        self._set_status(f"Logs of {self.deployed_model_id}: {len(text)} new characters.", "ok")

    def _stop(self) -> None:
        sess = self._require_session()
        if not self.deployed_model_id:
            raise PanelError("Nothing deployed from this panel yet")
        reply = sess.client.kill(self.deployed_model_id)
        self._set_status(f"Model {self.deployed_model_id}: {reply.get('state', 'stopped')}.", "ok")

    def _adopt_model(self, sess: Any, model_id: Optional[str], name: Optional[str]) -> None:
        """After an upload, remember the model for this notebook (as the magics do) and
        pick it, so the next click adds a version to it instead of making another model."""
        from . import runs

        if not model_id:
            return
        runs.remember_model(self.notebook, sess.url, model_id, self.project_dd.value, name)
        if self.model_dd.value != model_id:
            self._load_models(select=model_id)

    def _clear_results(self) -> None:
        self.results.outputs = ()  # not clear_output(): that captures the main thread's context
        self.logs.outputs = ()
        _show(self.deployment_bar, False)


def _fit(fragment: str) -> str:
    """Keep result HTML (its chart is an 800 px PNG) inside the panel's width."""
    return ("<div class='blankly-panel-result' style='max-width:100%;overflow-x:auto'>"
            "<style>.blankly-panel-result img{max-width:100%;height:auto}</style>" + fragment + "</div>")


def show_panel(**kwargs: Any) -> BlanklyPanel:
    """Display the deployment panel and return it (kwargs: notebook, executor, data_dir, confirm_seconds)."""
    panel = BlanklyPanel(**kwargs)
    display(panel.widget)
    panel._shown_in = _execution_count()
    return panel


def _loaded_magics() -> Any:
    """The shell's BlanklyMagics (its %config options) when the extension is loaded, else None."""
    magics = sys.modules.get(__package__ + ".magics")
    return magics.get_magics() if magics is not None else None


def _execution_count() -> Optional[int]:
    from IPython import get_ipython

    shell = get_ipython()
    return getattr(shell, "execution_count", None) if shell is not None else None


class _CallableModule(types.ModuleType):
    """``blankly_magics.panel()`` must keep working once this submodule is imported: the
    import system then sets the package's ``panel`` attribute (a function) to this module."""

    def __call__(self, **kwargs: Any) -> BlanklyPanel:
        return show_panel(**kwargs)


sys.modules[__name__].__class__ = _CallableModule
