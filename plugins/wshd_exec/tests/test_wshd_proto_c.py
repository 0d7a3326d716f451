"""Runs wshd's C protocol unit tests (native/wshd/tests/test_proto.c) through make."""

import shutil
import subprocess
from pathlib import Path

import pytest

WSHD_DIR = Path(__file__).resolve().parents[3] / "native" / "wshd"


def test_proto_unit_tests_pass() -> None:
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("needs make and a C compiler (apt-get install make gcc libc6-dev)")
    result = subprocess.run(
        ["make", "-s", "-C", str(WSHD_DIR), "test"], capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "not ok" not in output
    assert "ok 1 - " in output and "\n1.." in output
