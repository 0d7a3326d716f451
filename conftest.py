"""Root conftest: every test in the tree runs under the kernel leak checker, and the kit's
contract suites get pytest's assertion rewriting (their failures show the values)."""

import pytest

pytest.register_assert_rewrite("warden_framework.testing")

pytest_plugins = ["warden_framework.testing.plugin"]
