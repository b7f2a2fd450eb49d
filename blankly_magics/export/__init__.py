"""Notebook -> Blankly model: the exporter.

One module per step. ``cells`` reads the notebook (or a kernel's history) and names
cells as JupyterLab shows them; ``directives`` reads ``#| blankly`` lines and
``selection`` chooses the cells; ``ipython`` (over ``lines``) comments out IPython
syntax and ``pip`` reads ``!pip install`` lines; ``script`` joins the cells into one
script and ``checks`` (with ``names`` and ``scan``) checks it against its cells.
``requirements`` (with ``distributions`` and the ``known_imports`` table) writes
requirements.txt, ``manifest`` blankly.json and the settings files, ``collect``
gathers the user's files, and ``build`` assembles the ``bundle``, whose zip follows
``blankly_magics.modelzip``.
"""
from __future__ import annotations

from .build import build_bundle
from .bundle import Bundle, BundleFile
from .cells import Cell, CellChoice, CellRef, cell_label, cells_from_sources, read_notebook
from .errors import BuildError, ExportError
from .result import ExportedScript, ImportRef
from .scan import find_imports
from .script import export_script
from .selection import preview_cells

__all__ = [
    "BuildError",
    "Bundle",
    "BundleFile",
    "Cell",
    "CellChoice",
    "CellRef",
    "ExportError",
    "ExportedScript",
    "ImportRef",
    "build_bundle",
    "cell_label",
    "cells_from_sources",
    "export_script",
    "find_imports",
    "preview_cells",
    "read_notebook",
]
