"""The CgroupV1Driver through its hooks on the real kernel: a process placed in the groups,
limits read back, stats, the OOM event source, and nothing left after release_limits."""

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from warden_cgroup_v1 import cgroups
from warden_cgroup_v1.driver import CgroupV1Driver
from warden_framework.config import settings_from_dict
from warden_framework.container import Container
from warden_framework.errors import WardenError


@pytest.fixture
def driver(real_kernel):
    prefix = "wt" + os.urandom(4).hex()  # name_prefix allows 10 characters
    settings = settings_from_dict({"server": {"name_prefix": prefix}})
    CgroupV1Driver.check_host(settings)
    yield CgroupV1Driver(settings)
    cgroups.remove_prefix(Path(settings.server.cgroup_root), prefix)


@pytest.fixture
def container(driver, tmp_path):
    c = Container(id="t" + os.urandom(5).hex(), handle="h", path=tmp_path)
    c.records["limits"] = driver.apply_limits(container=c, settings=driver.settings)
    # What an exec driver does with the record: the process joins through the tasks files.
    join = 'for f in "$@"; do echo 0 > "$f" || exit 1; done; echo joined; exec sleep 600'
    proc = subprocess.Popen(["sh", "-c", join, "sh", *c.records["limits"]["tasks"]],
                            stdout=subprocess.PIPE)
    joined = proc.stdout.readline()
    proc.stdout.close()
    c.records["exec"] = {"pid": proc.pid}
    if joined != b"joined\n":
        proc.kill()
    yield c
    driver.release_limits(container=c, record=c.records.get("limits"))
    proc.wait(timeout=10)


def test_hook_apply_limits_names_the_tasks_files_of_every_group(driver, container):
    pid = container.records["exec"]["pid"]
    assert len(container.records["limits"]["tasks"]) == len(driver._paths(container).directories())
    for directory in driver._paths(container).directories():
        assert str(pid) in (directory / "cgroup.procs").read_text().split()
    devices = (driver._paths(container).devices / "devices.list").read_text()
    assert "c 1:3 rwm" in devices and "a *:* rwm" not in devices


def test_hook_limit_memory_reads_back_what_the_kernel_kept(driver, container):
    assert driver.limit_memory(container=container, limit=None) == 9223372036854771712
    assert driver.limit_memory(container=container, limit=100 * 1024 * 1024) == 100 * 1024 * 1024
    memsw = driver._paths(container).memory / "memory.memsw.limit_in_bytes"
    assert int(memsw.read_text()) == 100 * 1024 * 1024
    with pytest.raises(WardenError, match="Failed setting memory limit"):
        driver.limit_memory(container=container, limit=0)


def test_hook_limit_cpu_clamps_to_two(driver, container):
    assert driver.limit_cpu(container=container, shares=None) == 1024
    assert driver.limit_cpu(container=container, shares=1) == 2


def test_hook_info_reports_memory_and_cpu(driver, container):
    info = driver.info(container=container)
    assert "rss" in info["memory_stat"] and info["cpu_stat"]["usage"] >= 0


def test_hook_event_sources_report_oom(driver, container):
    assert driver.event_sources(container=container) == []
    container.memory_limit = 16 * 1024 * 1024
    driver.limit_memory(container=container, limit=container.memory_limit)
    (source,) = driver.event_sources(container=container)
    assert driver.event_sources(container=container) == [source]  # one watch per container
    hog = subprocess.Popen([sys.executable, "-c", "x = bytearray(64 << 20); import time; time.sleep(60)"],
                           preexec_fn=lambda: Path(driver._paths(container).memory / "cgroup.procs")
                           .write_text(str(os.getpid())))
    try:
        ready, _, _ = select.select([source.fileno()], [], [], 30)
        assert ready, "no OOM event within 30 s"
        assert source.read_event() == "out of memory"
    finally:
        hog.kill()
        hog.wait()


def test_hook_release_limits_twice_is_harmless(driver, container):
    driver.release_limits(container=container, record=None)
    driver.release_limits(container=container, record=None)
    assert all(not d.exists() for d in driver._paths(container).directories())


def test_hook_recover_fails_when_groups_are_gone(driver, container):
    driver.release_limits(container=container, record=None)
    with pytest.raises(WardenError, match="cgroups of .* are missing"):
        driver.recover(container=container, settings=driver.settings)
