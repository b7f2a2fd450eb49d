"""The IPython magics: ``%blankly_login``, ``%blankly_logout``, ``%%blankly_deploy``, ``%blankly``.

jupysql's shape: ``magic.BlanklyMagics`` is the ``@magics_class`` and the
configuration (``BlanklyConfig``) at once, and only routes; ``%blankly VERB`` goes
to one small module per verb in ``blankly_magics.verbs`` (which the CLI routes to
as well); ``errors`` holds the one mapping of ``BlanklyError`` to ``UsageError``
and the argparse subclass whose ``error()`` raises it; ``face`` is what the magics
show while a flow works. Every expected failure is one ``UsageError`` line.
"""
from __future__ import annotations

from .extension import get_magics, load_ipython_extension, unload_ipython_extension
from .help import help_texts
from .magic import BlanklyMagics

__all__ = ["BlanklyMagics", "get_magics", "help_texts", "load_ipython_extension", "unload_ipython_extension"]
