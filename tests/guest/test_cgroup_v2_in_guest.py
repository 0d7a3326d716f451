"""The server on a pure cgroup v2 kernel (Debian's, booted with cgroup_no_v1=all in a qemu
guest, as every current distribution runs): one boot runs the cgroup_v2 plugin's own tests
(the limits contract among them) and the integration tests that cover what a limits driver
touches, with the drivers the shipped config names (`limits: auto` must pick cgroup_v2 there,
or every server in them would refuse to start). Skips with the runner's reason where this host
cannot boot a guest."""

from __future__ import annotations

import re

import pytest

from warden_framework.testing import guest

pytestmark = pytest.mark.integration

IN_GUEST = [
    "plugins/cgroup_v2/tests",
    # create, run, spawn/link, limit_memory with an OOM event (also after a restart), a limit
    # below usage, pids limit, born in the container's group, rlimits
    "tests/integration/test_limits.py",
    "tests/integration/test_container_lifecycle.py::test_container_sees_wshd_as_pid1_and_no_host_processes",
    "tests/integration/test_container_lifecycle.py::test_link_from_second_connection",
    "tests/integration/test_container_lifecycle.py::test_memory_and_cpu_limits_read_back",
    "tests/integration/test_container_lifecycle.py::test_info_reports_stats",
    "tests/integration/test_container_lifecycle.py::test_stop_kills_jobs_and_keeps_files",
    "tests/integration/test_container_lifecycle.py::test_destroy_leaves_nothing",
    "tests/integration/test_restart.py::test_containers_and_jobs_survive_restart",
    "tests/integration/test_shipped_config.py",  # limits: auto chooses cgroup_v2 there
    # the attacks on what the v2 driver guards: devices (a BPF program, not v1's controller),
    # cgroupfs mounts, and groups or processes an escape attempt could leave behind
    "tests/integration/test_containment.py::test_device_nodes_planted_in_a_rootfs_do_not_open",
    "tests/integration/test_containment.py::test_an_escape_attempt_leaves_nothing_on_the_host",
    "tests/integration/test_containment_jobs.py::test_root_cannot_mount",
]
TIMEOUT = 1500  # seconds; emulated (TCG) guests run Python some 5-10 times slower


def test_cgroup_v2_driver_and_the_server_on_a_pure_cgroup_v2_kernel():
    reason = guest.skip_reason()
    if reason:
        pytest.skip(reason)
    run = guest.run_pytest([*IN_GUEST, "-q", "-rfEs", "-p", "no:randomly"], timeout=TIMEOUT)
    summary = run.output.strip().splitlines()[-1] if run.output.strip() else ""
    print(f"\ncgroup v2 guest: pytest started after {run.boot_seconds:.1f} s, "
          f"total {run.total_seconds:.1f} s: {summary}")
    assert run.rc == 0, run.output[-6000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 60, summary  # the tests did run, not skip
