"""What sits beside the script in a Blankly model: blankly.json, settings.json and
backtest.json, and which of the user's files hold credentials.

Blankly's default settings are kept here as data (a test compares them with
the installed blankly); blankly.json's keys and defaults are the model-zip
format's (``modelzip``).
"""
from __future__ import annotations

import copy
import json
import re
import sys
from typing import Any, Optional

from ..modelzip import (
    DEFAULT_DEPLOY_SETTINGS,
    DEFAULT_MODEL_TYPE,
    DEFAULT_REQUIREMENTS,
    DEFAULT_SCHEDULE,
    DEFAULT_WORKING_DIRECTORY,
)

__all__ = [
    "DEFAULT_BACKTEST_SETTINGS",
    "DEFAULT_DEPLOY_SETTINGS",
    "DEFAULT_GENERAL_SETTINGS",
    "blankly_json",
    "default_backtest_bytes",
    "default_settings_bytes",
    "headless_backtest_settings",
    "keys_json_has_secrets",
    "default_python",
    "running_python",
    "strip_secret_keys",
    "to_json_bytes",
]

# Blankly 1.18's defaults (blankly.utils.utils.default_general_settings and
# default_backtest_settings), as plain data.
DEFAULT_GENERAL_SETTINGS: dict[str, Any] = {
    "settings": {
        "use_sandbox_websockets": False,
        "websocket_buffer_size": 10000,
        "test_connectivity_on_auth": True,
        "auto_truncate": False,
        "global_shorting": False,
        "simulate_margin": True,
        "coinbase_pro": {"cash": "USD"},
        "binance": {"cash": "USDT", "binance_tld": "us"},
        "binance_futures": {"cash": "USDT", "margin_type": "USDT-M"},
        "alpaca": {"websocket_stream": "iex", "cash": "USD", "enable_shorting": True, "use_yfinance": False},
        "oanda": {"cash": "USD"},
        "okx": {"cash": "USDT"},
        "keyless": {"cash": "USD"},
        "kucoin": {"cash": "USDT"},
        "ftx": {"cash": "USD", "ftx_tld": "us"},
        "ftx_futures": {"cash": "USD", "ftx_tld": "com"},
        "paper": {"price_source": "api"},
    }
}

DEFAULT_BACKTEST_SETTINGS: dict[str, Any] = {
    "price_data": {"assets": []},
    "settings": {
        "use_price": "close",
        "smooth_prices": False,
        "GUI_output": True,
        "show_tickers_with_zero_delta": False,
        "save_initial_account_value": True,
        "show_progress_during_backtest": True,
        "cache_location": "./price_caches",
        "continuous_caching": True,
        "resample_account_value_for_metrics": "1d",
        "quote_account_value_in": "USD",
        "ignore_user_exceptions": True,
        "risk_free_return_rate": 0.0,
        "benchmark_symbol": None,
    },
}

# Keys of blankly.json (or anything like them) that hold credentials.
_SECRET_KEY = re.compile(r"(?i)(api_?key|api_?pass|secret|token|passw|credential)")


# Blankly 1.18 does not install on Python 3.12 and newer (its newnewtulipy dependency
# does not build there), so a model runs on 3.11 at the newest.
NEWEST_MODEL_PYTHON = (3, 11)


def running_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def default_python() -> tuple[str, Optional[str]]:
    """The python_version a model asks for when none is given: this interpreter's, or the
    newest Blankly installs on (and a note saying why) when this one is newer."""
    if sys.version_info[:2] <= NEWEST_MODEL_PYTHON:
        return running_python(), None
    newest = ".".join(map(str, NEWEST_MODEL_PYTHON))
    return newest, (
        f"blankly.json says python_version {newest}, not this interpreter's {running_python()}: blankly does not "
        f"install on Python 3.12 and newer, so models run on {newest} or older (pass --python to choose)"
    )


def to_json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=4) + "\n").encode("utf-8")


def strip_secret_keys(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of a blankly.json dict without credential keys, and the keys removed."""
    kept = {k: v for k, v in data.items() if not _SECRET_KEY.search(str(k))}
    return kept, sorted(k for k in data if k not in kept)


def blankly_json(
    *,
    main_script: str,
    python_version: str,
    model_type: str = DEFAULT_MODEL_TYPE,
    schedule: Optional[str] = None,
    backtest_args: Optional[dict[str, Any]] = None,
    model_id: Optional[str] = None,
    project_id: Optional[str] = None,
    user: Optional[dict[str, Any]] = None,
    parameters: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """blankly.json: Blankly's keys and defaults, the user's own file (minus secrets), our values.
    ``parameters``: the parameters cell's defaults (the names a run may override), when there is one."""
    data = copy.deepcopy(DEFAULT_DEPLOY_SETTINGS)
    user, _ = strip_secret_keys(user or {})
    for key, value in user.items():
        data[key] = copy.deepcopy(value)
    data["main_script"] = "./" + main_script
    data["python_version"] = python_version
    data["requirements"] = DEFAULT_REQUIREMENTS
    data["working_directory"] = DEFAULT_WORKING_DIRECTORY
    if not isinstance(data.get("ignore_files"), list):
        data["ignore_files"] = list(DEFAULT_DEPLOY_SETTINGS["ignore_files"])
    if backtest_args is not None:
        data["backtest_args"] = copy.deepcopy(backtest_args)
    screener = data.get("screener") if isinstance(data.get("screener"), dict) else {}
    data["screener"] = {**screener, "schedule": schedule or screener.get("schedule") or DEFAULT_SCHEDULE}
    data["type"] = model_type
    if model_id:
        data["model_id"] = model_id
    if project_id:
        data["project_id"] = project_id
    data.pop("parameters", None)  # what the script applies, never what an older file said
    if parameters is not None:
        data["parameters"] = copy.deepcopy(parameters)
    return data


def headless_backtest_settings(data: Any) -> tuple[Any, bool]:
    """backtest.json with settings.GUI_output false; and whether anything changed."""
    if not isinstance(data, dict):
        return data, False
    settings = data.get("settings")
    if not isinstance(settings, dict):
        data = {**data, "settings": {"GUI_output": False}}
        return data, True
    if settings.get("GUI_output") is False:
        return data, False
    return {**data, "settings": {**settings, "GUI_output": False}}, True


def default_settings_bytes() -> bytes:
    return to_json_bytes(DEFAULT_GENERAL_SETTINGS)


def default_backtest_bytes() -> bytes:
    return to_json_bytes(headless_backtest_settings(copy.deepcopy(DEFAULT_BACKTEST_SETTINGS))[0])


def keys_json_has_secrets(raw: bytes) -> bool:
    """True when keys.json holds anything but Blankly's ``*****`` placeholders (or cannot be read)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return True
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(v for k, v in item.items() if k != "sandbox")
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item.strip() and set(item.strip()) != {"*"}:
            return True
    return False
