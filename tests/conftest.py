"""Shared fixtures: real notebooks (nbformat), real servers on loopback."""
pytest_plugins = ["tests.fixtures_home", "tests.fixtures_notebooks", "tests.fixtures_server"]
