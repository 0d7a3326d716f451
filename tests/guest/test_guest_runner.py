"""The guest runner on the real guest: one boot runs selftest_inside.py (pure cgroup v2,
idmapped mounts on ext4, drivers load, one deliberate failure) and the summary must say so;
the CLI passes pytest's exit status through; a timeout kills qemu and leaves no file behind.
Skips with the runner's own reason where this host cannot boot a guest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from warden_framework.testing import guest
from warden_framework.testing.guest import runner

pytestmark = pytest.mark.integration

SELFTEST = Path(__file__).with_name("selftest_inside.py")
PASSING = ("test_sys_fs_cgroup_is_the_cgroup2_root_and_no_v1_hierarchy_is_mounted",
           "test_the_v2_root_offers_memory_cpu_pids_and_io",
           "test_tmp_and_the_default_rootfs_take_idmapped_mounts_on_ext4",
           "test_every_installed_driver_loads_and_is_of_its_subsystem")
FAILING = "test_deliberate_failure_a_v1_memory_hierarchy_is_mounted"


@pytest.fixture(scope="module")
def bootable() -> None:
    reason = guest.skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def selftest(bootable) -> guest.GuestRun:
    run = guest.run_pytest([str(SELFTEST), "-v"], timeout=600)
    print(f"\nguest selftest: pytest started after {run.boot_seconds:.1f} s, "
          f"total {run.total_seconds:.1f} s")
    return run


def _result_lines(output: str, verdict: str) -> set[str]:
    return {name for name in PASSING + (FAILING,)
            if any(name in line and verdict in line for line in output.splitlines())}


def test_guest_selftest_passes_four_and_reports_the_deliberate_failure(selftest):
    summary = selftest.output.strip().splitlines()[-1]
    assert "1 failed" in summary and "4 passed" in summary, selftest.output
    assert _result_lines(selftest.output, "PASSED") == set(PASSING), selftest.output
    assert _result_lines(selftest.output, "FAILED") == {FAILING}, selftest.output
    assert "AssertionError: assert 'cgroup' in set()" in selftest.output
    assert selftest.rc == 1


def test_guest_run_measures_boot_before_the_total(selftest):
    assert 0 < selftest.boot_seconds < selftest.total_seconds


def test_cli_streams_output_and_exits_with_pytests_status(bootable):
    missing = "tests/guest/no_such_test_file.py"
    proc = subprocess.run([sys.executable, "-m", "warden_framework.testing.guest",
                           "--timeout", "300", "--", missing],
                          capture_output=True, text=True, timeout=360, check=False)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest: usage error
    assert f"file or directory not found: {missing}" in proc.stdout


def test_timeout_kills_qemu_and_removes_every_file(bootable, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "SCRATCH_DIR", tmp_path)
    with pytest.raises(guest.GuestTimeout):
        guest.run_pytest(["--version"], timeout=3)
    assert list(tmp_path.iterdir()) == []
    assert [pid for pid in _pids() if str(tmp_path) in _cmdline(pid)] == []


def _pids() -> list[str]:
    return [name for name in os.listdir("/proc") if name.isdigit()]


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
