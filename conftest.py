"""Root conftest: every test in the tree runs under the kernel leak checker."""

pytest_plugins = ["warden_framework.testing.plugin"]
