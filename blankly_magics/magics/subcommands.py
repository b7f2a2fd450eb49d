"""``%blankly SUBCOMMAND``: routes to the verb modules (``blankly_magics.verbs``) and the panel."""
from __future__ import annotations

from typing import Any, Optional

from IPython.core.error import UsageError

from .. import verbs
from ..results import BacktestResult
from ..sweep_result import SweepResult
from .errors import HelpShown, SubcommandParser, split, usage_errors
from .face import NotebookFace

# Words a user types after %blankly that are magics of their own here (the CLI has them as verbs).
ELSEWHERE = {
    "deploy": "deploying is the cell magic %%blankly_deploy: put it on the first line of the cell that holds "
              "the entry point, e.g. strategy.start()",
    "backtest": "backtesting is the cell magic %%blankly_deploy --backtest: put it on the first line of the cell "
                "that holds the entry point, e.g. strategy.start()",
    "build": "building the model zip is %%blankly_deploy --dry-run --save model.zip",
    "login": "signing in is %blankly_login",
    "logout": "signing out is %blankly_logout",
}


def parser() -> SubcommandParser:
    top = SubcommandParser(
        prog="%blankly",
        description="Look at and manage what is on the deployment server.",
        epilog="See also %blankly_login, %%blankly_deploy? and `%blankly SUBCOMMAND --help`.",
    )
    subs = top.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=SubcommandParser)
    verbs.add_verbs(subs)
    subs.add_parser("panel", help="show the deployment panel (ipywidgets)").set_defaults(verb="panel")
    return top


def run(magics: Any, line: str, top: SubcommandParser) -> Optional[Any]:
    argv = split(line)
    if not argv:
        top.print_help()
        return None
    if argv[0] in ELSEWHERE:
        raise UsageError(f"%blankly {argv[0]}: {ELSEWHERE[argv[0]]}")
    try:
        args = top.parse_args(argv)
    except HelpShown:
        return None
    if args.verb == "panel":
        return _panel()
    face = NotebookFace(magics)
    try:
        with usage_errors():
            value = verbs.module(args.verb).run(face, args)
    finally:
        face.close()
    if isinstance(value, (BacktestResult, SweepResult)):
        value.show_chart = magics.show_chart
    return value


def _panel() -> Any:
    try:
        from ..panel import show_panel
    except ImportError as exc:
        raise UsageError(f"the panel needs {exc.name}: pip install {exc.name}") from None
    return show_panel()
