"""Where ``build_bundle`` and ``BuildError`` used to live; they are in ``blankly_magics.export``."""
from __future__ import annotations

from .export import BuildError, Bundle, BundleFile, CellRef, build_bundle

__all__ = ["BuildError", "Bundle", "BundleFile", "CellRef", "build_bundle"]
