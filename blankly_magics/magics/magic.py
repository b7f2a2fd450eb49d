"""The magics class: options as traits (it is the ``BlanklyConfig``), each magic a thin router.

Loading must stay cheap (``%load_ext`` is timed): only IPython/traitlets pieces,
already imported in any kernel, and our light option modules are imported here;
requests, nbformat, widgets, the server and the client load inside the magics.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from ..config import BlanklyConfig
from ..verbs.options import DEPLOY_OPTIONS, LOGIN_OPTIONS, MAGIC, Option, options_for
from .errors import SubcommandParser, parse, usage_errors
from .face import NotebookFace


def with_options(options: Sequence[Option]) -> Callable[[Callable], Callable]:
    """``@argument`` for each option, in order (so ``%magic?`` lists them as written)."""

    def apply(func: Callable) -> Callable:
        for flags, keywords, _ in reversed(options):
            func = argument(*flags, **keywords)(func)
        return func

    return apply


@magics_class
class BlanklyMagics(Magics, BlanklyConfig):
    """Deploy and backtest Blankly strategies from notebook cells.

    Its traits are ``BlanklyConfig``'s: ``%config BlanklyMagics.url = ...`` (or
    ``c.BlanklyConfig.url`` in a profile) sets them for the magics, the panel and
    the workflow alike."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        BlanklyConfig.__init__(self, config=shell.config if shell is not None else None, **kwargs)
        Magics.__init__(self, shell=shell)
        self._subparser: Optional[SubcommandParser] = None

    @magic_arguments()
    @with_options(options_for(LOGIN_OPTIONS, MAGIC))
    @no_var_expand
    @line_magic
    def blankly_login(self, line: str = "") -> None:
        """Sign in to a deployment server, or start and sign in to the embedded local one.

        A token is never taken as an argument (it would be saved in the notebook)
        and never printed.
        """
        from ..verbs import login

        args = parse(self.blankly_login, line)
        with usage_errors():
            login.run(NotebookFace(self), args)

    @line_magic
    def blankly_logout(self, line: str = "") -> None:
        """Sign out: revoke the refresh token and forget it."""
        from ..verbs import logout

        with usage_errors():
            logout.run(NotebookFace(self), None)

    @magic_arguments(name="%blankly_deploy")  # usage then reads %%blankly_deploy
    @with_options(options_for(DEPLOY_OPTIONS, MAGIC))
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
        from .deploy import deploy

        return deploy(self, parse(self.blankly_deploy, line), cell)

    # No @no_var_expand here: `%blankly logs --model $model_id` should work as in any magic.
    @line_magic
    def blankly(self, line: str = "") -> Any:
        """%blankly SUBCOMMAND [options]: projects, models, versions, status, logs,
        stop, backtests, result, sweeps, sweep, cancel, panel. `%blankly SUBCOMMAND --help` for each."""
        from . import subcommands

        if self._subparser is None:
            self._subparser = subcommands.parser()
        return subcommands.run(self, line, self._subparser)


for _magic in (BlanklyMagics.blankly_login, BlanklyMagics.blankly_deploy):
    _magic.parser.allow_abbrev = False  # `--to` must not quietly mean `--token-env` (as in the CLI)
