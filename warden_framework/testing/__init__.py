"""Test kit for the core and for plugin authors: fake drivers (never entry points), a leak
checker and shared fixtures. Enable with `pytest_plugins = ["warden_framework.testing.plugin"]`."""
