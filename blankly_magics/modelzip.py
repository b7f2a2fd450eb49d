"""The model zip, as the client writes it and the server accepts it.

One root folder ``model/`` with ``model/blankly.json`` directly inside; the
manifest's keys and their defaults are Blankly's (``blankly deploy`` writes the
same file). The client builds zips within the limits below and the server
refuses zips beyond them, so both import them from here.
"""
from __future__ import annotations

from typing import Any

ROOT = "model/"
MANIFEST_NAME = "blankly.json"
MANIFEST = ROOT + MANIFEST_NAME

# Blankly 1.18's blankly.json defaults (blankly.utils.utils.default_deploy_settings),
# as plain data; a test compares them with the installed blankly.
DEFAULT_DEPLOY_SETTINGS: dict[str, Any] = {
    "main_script": "./bot.py",
    "python_version": "3.7",
    "requirements": "./requirements.txt",
    "working_directory": ".",
    "ignore_files": ["price_caches", ".git", ".idea", ".vscode"],
    "backtest_args": {"to": "1y"},
    "screener": {"schedule": "30 14 * * 1-5"},
}
DEFAULT_MAIN_SCRIPT = DEFAULT_DEPLOY_SETTINGS["main_script"]
DEFAULT_REQUIREMENTS = DEFAULT_DEPLOY_SETTINGS["requirements"]
DEFAULT_WORKING_DIRECTORY = DEFAULT_DEPLOY_SETTINGS["working_directory"]
DEFAULT_SCHEDULE = DEFAULT_DEPLOY_SETTINGS["screener"]["schedule"]

# blankly.json's "type": what the model is. Blankly's manifest has no type key;
# a missing one means a strategy.
MODEL_TYPES = ("strategy", "screener")
DEFAULT_MODEL_TYPE = "strategy"

# What the server accepts; the client refuses to build beyond it.
MAX_ENTRIES = 10_000
MAX_UNPACKED = 1 << 30  # 1 GiB unpacked: far above any real model
MAX_MANIFEST = 1 << 20

# Every entry the client writes: one fixed time and fixed permissions, so the same
# files give the same bytes (and the same sha256, which names a version).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
DIR_MODE = 0o040755
