"""pytest plugin: an autouse leak checker that fails any test leaving kernel objects behind.

Enable with `pytest_plugins = ["warden_framework.testing.plugin"]` in a conftest.py.
"""

from __future__ import annotations

import os

import pytest

from . import leaks


@pytest.fixture(autouse=True)
def no_kernel_leaks(request):
    """Compare the kernel objects before and after the test; leftovers fail it."""
    if os.geteuid() != 0 or request.node.get_closest_marker("leaks_allowed"):
        yield
        return
    before = leaks.inventory()
    yield
    left = leaks.leftovers(before, leaks.inventory())
    if left:
        lines = [f"{kind}: {', '.join(sorted(items))}" for kind, items in left.items()]
        pytest.fail("test left kernel objects behind:\n  " + "\n  ".join(lines), pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "leaks_allowed: skip the kernel leak check")
