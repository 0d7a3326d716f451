"""Fixtures of the driver's real-kernel tests: the cgroup2 root to test on, a prefix group
unique to the test (removed with every group under it, even when the test fails), and child
processes to put in groups. All names start with `v2_` (test_devices.py has its own).

The root is $WARDEN_CGROUP_V2_ROOT, else /sys/fs/cgroup when it is a cgroup2 mount (a pure
v2 host, or the qemu guest), else /sys/fs/cgroup/unified (this hybrid host: no controllers,
but groups, cgroup.procs, cgroup.events, cgroup.kill and cgroup.freeze work).
"""

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_cgroup_v2 import groups, hierarchy, kernel

ROOT_ENV = "WARDEN_CGROUP_V2_ROOT"
CANDIDATE_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs root and the real kernel")


def is_cgroup2(path: Path) -> bool:
    try:
        return kernel.filesystem_magic(path) == hierarchy.CGROUP2_SUPER_MAGIC
    except OSError:
        return False


def find_cgroup2_root() -> Path | None:
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV])
    return next((root for root in CANDIDATE_ROOTS if is_cgroup2(root)), None)


@pytest.fixture
def v2_root() -> Path:
    """A cgroup2 directory we may make groups in; skips, saying why, where there is none."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make cgroups")
    root = find_cgroup2_root()
    if root is None or not is_cgroup2(root):
        pytest.skip(f"no cgroup2 mount at {root or ' or '.join(map(str, CANDIDATE_ROOTS))}")
    return root


@pytest.fixture
def v2_controllers(v2_root: Path) -> Path:
    """The root, when it offers memory, cpu and pids; else skip naming what is missing."""
    offered = hierarchy.controllers(v2_root)
    missing = [c for c in hierarchy.REQUIRED_CONTROLLERS if c not in offered]
    if missing:
        guest = ".venv/bin/python -m warden_framework.testing.guest -- plugins/cgroup_v2/tests"
        pytest.skip(f"cgroup2 at {v2_root} lacks the {', '.join(missing)} controllers (bound to "
                    f"cgroup v1 on this host; these run in the pure-v2 qemu guest: {guest})")
    return v2_root


def unique_prefix() -> str:
    """`wt` + random: the leak checker knows the prefix; name_prefix allows 10 characters."""
    return "wt" + secrets.token_hex(4)


def remove_everything_under(root: Path, prefix: str) -> None:
    """Finalizer: each group under the prefix (processes killed), then the prefix itself."""
    top = root / prefix
    if top.is_dir():
        for entry in os.scandir(top):
            if entry.is_dir():
                groups.remove(Path(entry.path))
    hierarchy.teardown(root, prefix)


@pytest.fixture
def v2_prefix_name(v2_root: Path) -> Iterator[str]:
    """A prefix unique to this test, not made yet; afterwards it and every group under it
    are gone (processes killed), whatever the test did."""
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        remove_everything_under(v2_root, prefix)
    assert not (v2_root / prefix).exists()


@pytest.fixture
def v2_prefix(v2_root: Path, v2_prefix_name: str) -> str:
    """The prefix group made as setup_host makes it, unique to this test, gone afterwards."""
    hierarchy.setup(v2_root, v2_prefix_name)
    return v2_prefix_name


class Children:
    """Python child processes that wait for a line on stdin before running their code, so a
    test can place them in a group first. Killed and reaped at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, code: str, join: Path | None = None) -> subprocess.Popen:
        """Start a child; with `join`, the child first writes "0" into that cgroup.procs
        itself, as the exec driver's init does, and prints "joined"."""
        prelude = (f"open({str(join)!r}, 'w').write('0')\nprint('joined', flush=True)\n"
                   if join else "")
        waiting = f"import os, sys\n{prelude}sys.stdin.readline()\n{code}"
        proc = subprocess.Popen([sys.executable, "-c", waiting], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def go(proc: subprocess.Popen) -> None:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def v2_children() -> Iterator[Children]:
    kids = Children()
    yield kids
    kids.close()
