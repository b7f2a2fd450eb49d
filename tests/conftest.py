"""Shared fixtures: real notebooks (nbformat), real servers on loopback, a real IPython shell."""
import pytest

pytest_plugins = ["tests.fixtures_home", "tests.fixtures_notebooks", "tests.fixtures_server", "tests.magics_shell",
                  "tests.fixtures_panel"]


@pytest.fixture(autouse=True)
def default_config():
    """Each test starts from the default configuration: a shell loaded by an earlier test
    must not lend it its %config settings."""
    from blankly_magics import config

    config.set_active(None)
    yield
    config.set_active(None)
