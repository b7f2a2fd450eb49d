"""MkDocs hook: pages the site takes from the repository instead of from docs/.

- ``reference/magics.md`` is written at build time from ``blankly_magics.magics.help_texts()``,
  the help each magic shows with ``?`` / ``--help``, so the reference cannot drift from the code.
- The notebooks (``notebooks/*.ipynb``) and the panel screenshot are served from
  ``notebooks/`` where they live, not copied into docs/; mkdocs-jupyter renders the notebooks.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("notebooks/quickstart.ipynb", "notebooks/deploy_live.ipynb", "notebooks/images/panel.png")
MAGICS_PAGE = "reference/magics.md"

_INTRO = """\
# Magic options

Every magic's help, exactly as it shows in a notebook (`%%blankly_deploy?`,
`%blankly_login?`, `%blankly SUBCOMMAND --help`). This page is generated when the site
is built, from `blankly_magics.magics.help_texts()`; the options the magics share with
`%config BlanklyMagics` are in [the magics guide](../guide/magics.md#options).
"""


def _usage_block(text: str) -> str:
    """IPython writes a magic's usage as an RST literal block (``::`` then indented lines): plain text here."""
    lines = text.strip("\n").splitlines()
    if lines and lines[0].strip() == "::":
        lines = lines[1:]
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def magics_reference(texts: dict[str, str]) -> str:
    """The Markdown of the magic options page: one section per magic, keyed by how it is typed."""
    parts = [_INTRO]
    for typed, text in texts.items():
        parts.append(f"## `{typed}`\n\n```text\n{_usage_block(text)}\n```\n")
    return "\n".join(parts)


def on_files(files, config):  # noqa: ANN001, ANN201 - MkDocs' hook signature
    from mkdocs.structure.files import File

    from blankly_magics.magics import help_texts

    for path in NOTEBOOKS:
        files.append(File(path, src_dir=str(REPO), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    files.append(File.generated(config, MAGICS_PAGE, content=magics_reference(help_texts())))
    return files


# Before mkdocs-jupyter's own on_files, which turns every .ipynb it is given into a page.
on_files.mkdocs_priority = 100  # type: ignore[attr-defined]
