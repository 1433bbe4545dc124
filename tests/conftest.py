"""Shared fixtures: the emulators on loopback, each area's fixtures in its own plugin module."""

pytest_plugins = ["tests.fixtures_monite", "tests.fixtures_vault"]
