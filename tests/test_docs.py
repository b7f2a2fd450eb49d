"""The docs site: every page in its navigation exists, the generated pages hold what their
sources hold, and the API page names every route the server serves.

``python -m mkdocs build --strict`` (run by CI after installing the ``docs`` extra) checks
the links and renders everything; these checks need no MkDocs and run with the suite.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import yaml

from tests.fixtures_notebooks import REPO

DOCS = REPO / "docs"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_sources_hook", DOCS / "_hooks" / "sources.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages(nav: Any) -> Iterator[str]:
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from _nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_pages(value)


def test_every_page_in_the_navigation_exists() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    hook = _hook()
    from_repo = {path: REPO / path for path in hook.NOTEBOOKS}
    pages = list(_nav_pages(config["nav"]))
    assert len(pages) >= 20
    missing = [p for p in pages
               if p != hook.MAGICS_PAGE and not (DOCS / p).is_file() and not from_repo.get(p, Path("/-")).is_file()]
    assert not missing, f"in mkdocs.yml's nav but nowhere on disk: {missing}"
    # The notebooks are served from notebooks/, never copied into docs/.
    assert not list(DOCS.rglob("*.ipynb"))


def test_the_magic_options_page_holds_every_magics_own_help() -> None:
    from blankly_magics.magics import help_texts

    texts = help_texts()
    page = _hook().magics_reference(texts)
    sections = re.split(r"^## ", page, flags=re.M)[1:]
    assert [s.split("\n", 1)[0] for s in sections] == [f"`{typed}`" for typed in texts]
    for section, (typed, text) in zip(sections, texts.items()):
        for line in text.splitlines():
            if line.strip() and line.strip() != "::":
                assert line.rstrip() in section, f"{typed}: {line!r} is missing from the page"
    deploy = sections[list(texts).index("%%blankly_deploy")]
    assert "--backtest" in deploy and "--dry-run" in deploy and "\n::\n" not in deploy


def test_the_api_page_names_every_route_the_server_serves() -> None:
    from blankly_magics.server.app import ROUTES

    page = (DOCS / "server" / "api.md").read_text()
    unnamed = [route.path for route in ROUTES
               if not any(f"`{method} {route.path}`" in page for method in route.methods or ())
               and f"(also `{route.path}`)" not in page]  # an alias, named beside its route
    assert not unnamed, f"docs/server/api.md does not document: {unnamed}"


def test_the_benchmarks_page_was_written_by_a_full_run_of_every_benchmark() -> None:
    from tests.benchmarks.run import BENCHMARKS

    page = (DOCS / "benchmarks.md").read_text()
    assert "Written by `python -m tests.benchmarks.run --markdown docs/benchmarks.md`" in page
    assert "a quick run: small sizes" not in page
    for name in BENCHMARKS:
        assert f"\n## {name}\n" in page, f"no section for the {name} benchmark"
        assert f"[start:{name}]" in page and f"[end:{name}]" in page
    rows = re.findall(r"^\| (\S.*?) \| .+ \| .+ \| (\d+\.\d{3}) \|$", page, flags=re.M)
    assert len({name for name, _ in rows}) >= len(BENCHMARKS)


def test_the_reliability_page_was_written_from_the_record() -> None:
    from tests.report_reliability import TITLES

    page = (DOCS / "reliability.md").read_text()
    assert "Written by `python tests/report_reliability.py --out docs/reliability.md`" in page
    for title in TITLES.values():
        assert f"\n## {title}\n" in page, f"no section '{title}'"
    assert re.search(r"In all: \d+ hostile inputs refused cleanly, \d+ faults survived\.", page)
