"""Notebook -> Blankly model: the exporter.

The pipeline, one module per step: ``cells`` reads the notebook (or a kernel's
history), ``directives`` and ``selection`` choose the cells, ``ipython`` strips
IPython syntax, ``script`` joins the cells into one script and ``checks`` (with
``names`` and ``scan``) checks it against its cells; ``requirements`` infers
requirements.txt, ``manifest`` writes blankly.json and the settings files,
``collect`` gathers the user's files and ``build`` assembles the ``bundle``,
whose zip follows ``blankly_magics.modelzip``.
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
