"""Shared fixtures: real notebooks (nbformat), real servers on loopback, a real IPython shell."""
from __future__ import annotations

import importlib.util
import signal
import sys

import pytest

pytest_plugins = ["tests.fixtures_home", "tests.fixtures_notebooks", "tests.fixtures_server", "tests.magics_shell",
                  "tests.fixtures_panel", "tests.fixtures_report"]

# Blankly does not install on Python 3.12 and newer (its newnewtulipy dependency does not
# build there): tests marked `blankly` skip themselves there, saying so.
NO_BLANKLY = None if importlib.util.find_spec("blankly") else (
    f"blankly is not installed on this Python {sys.version_info[0]}.{sys.version_info[1]} "
    "(it installs on 3.11 and older: its newnewtulipy dependency does not build on 3.12+)"
)


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job with Ctrl-C ignored, and Python keeps it ignored; the tests
    # that press Ctrl-C in a cell need the handler a kernel has, however the suite was started.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if NO_BLANKLY:
        for item in items:
            if item.get_closest_marker("blankly"):
                item.add_marker(pytest.mark.skip(reason=NO_BLANKLY))


@pytest.fixture(autouse=True)
def default_config():
    """Each test starts from the default configuration: a shell loaded by an earlier test
    must not lend it its %config settings."""
    from blankly_magics import config

    config.set_active(None)
    yield
    config.set_active(None)
