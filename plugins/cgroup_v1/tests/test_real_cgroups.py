"""Integration tests on the real cgroup v1 tree at /sys/fs/cgroup (root, this kernel).

Every group lives under a prefix unique to the test (`real_prefix`), removed afterwards.
"""

import os
import select
import signal
import stat
from pathlib import Path

import pytest

from warden_cgroup_v1 import cgroups, cpu, devices, memory, oom, stats, tasks
from warden_cgroup_v1.errors import CgroupError

pytestmark = pytest.mark.integration

ROOT = cgroups.DEFAULT_ROOT
UNLIMITED = 9223372036854771712
MiB = 1 << 20
WAIT = 30.0  # deadline for the kernel to act; never reached when things work
HOLD_32_MIB = "b = b'x' * (32 << 20); print('ready', flush=True); sys.stdin.read()"
# The grandchild inherits the child's stdin pipe and blocks reading it.
SPAWN_GRANDCHILD = (
    "import subprocess; g = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'])\n"
    "print(g.pid, flush=True); sys.stdin.read()"
)
HOLD_8_MIB = "b = b'x' * (8 << 20); print('ready', flush=True); sys.stdin.read()"


@pytest.fixture
def hierarchies(real_kernel: None) -> dict[str, Path]:
    return cgroups.discover_hierarchies(ROOT)


@pytest.fixture
def group(real_prefix: str, hierarchies: dict[str, Path]) -> cgroups.CgroupPaths:
    return cgroups.create(ROOT, real_prefix, "c1", hierarchies)


def _start_in(group: cgroups.CgroupPaths, children, code: str):
    """Start a child, move it into `group`, then let it run `code`."""
    proc = children.start(code)
    cgroups.add_task(group, proc.pid)
    children.go(proc)
    return proc


def _wait_readable(fd_owner, timeout: float = WAIT) -> bool:
    readable, _, _ = select.select([fd_owner], [], [], timeout)
    return bool(readable)


# --------------------------------------------------------------------------- cgroups


def test_discover_finds_required_controllers_and_skips_systemd_and_unified(hierarchies) -> None:
    cgroups.check_required(hierarchies, ROOT)
    assert "systemd" not in hierarchies and "name=systemd" not in hierarchies
    assert all(path.name not in ("systemd", "unified") for path in hierarchies.values())


def test_create_then_remove_leaves_nothing_in_any_hierarchy(real_prefix: str, hierarchies) -> None:
    paths = cgroups.create(ROOT, real_prefix, "c1", hierarchies)
    assert {d.parent.parent for d in paths.directories()} == set(hierarchies.values())
    assert all(d.is_dir() for d in paths.directories())
    assert cgroups.list_ids(ROOT, real_prefix, hierarchies) == ["c1"]

    cgroups.remove(ROOT, real_prefix, "c1", hierarchies=hierarchies)
    cgroups.remove(ROOT, real_prefix, "c1", hierarchies=hierarchies)
    assert not any(d.exists() for d in paths.directories())
    assert cgroups.remove_prefix(ROOT, real_prefix, hierarchies)
    assert not any((mount / real_prefix).exists() for mount in hierarchies.values())


def test_new_cpuset_group_gets_the_parent_cpus_and_mems(group: cgroups.CgroupPaths) -> None:
    cpuset = group["cpuset"]
    for name in (cgroups.CPUSET_CPUS, cgroups.CPUSET_MEMS):
        value = (cpuset / name).read_text().strip()
        assert value
        assert value == (cpuset.parent.parent / name).read_text().strip()


def test_the_kernel_gives_later_cpuset_groups_their_cpus_and_mems_at_mkdir(
    group: cgroups.CgroupPaths,
) -> None:
    """Written by us, each cpuset write is checked against every sibling group: with 1,000
    containers a create's cost grew with them. After the first create the prefix group
    has the kernel copy both into each new group instead."""
    prefix_group = group["cpuset"].parent
    plain = prefix_group / "made-by-mkdir"
    plain.mkdir()
    try:
        for name in (cgroups.CPUSET_CPUS, cgroups.CPUSET_MEMS):
            value = (plain / name).read_text().strip()
            assert value and value == (prefix_group / name).read_text().strip()
    finally:
        plain.rmdir()


def test_added_process_is_in_every_hierarchy_and_remove_kills_it(
    real_prefix: str, group: cgroups.CgroupPaths, children
) -> None:
    proc = _start_in(group, children, "sys.stdin.read()")
    for directory in group.directories():
        assert tasks.list_pids(directory) == [proc.pid]
        assert str(proc.pid) in (directory / "tasks").read_text().split()

    cgroups.remove(ROOT, real_prefix, "c1")
    assert proc.wait(timeout=WAIT) == -signal.SIGKILL
    assert not any(d.exists() for d in group.directories())


def test_remove_kills_the_children_of_a_process_too(
    real_prefix: str, group: cgroups.CgroupPaths, children
) -> None:
    proc = _start_in(group, children, SPAWN_GRANDCHILD)
    grandchild = int(proc.stdout.readline())
    assert tasks.list_pids(group.memory) == sorted([proc.pid, grandchild])

    cgroups.remove(ROOT, real_prefix, "c1")
    assert proc.wait(timeout=WAIT) == -signal.SIGKILL
    assert cgroups.list_ids(ROOT, real_prefix) == []


def test_signal_all_spares_the_excluded_process(group: cgroups.CgroupPaths, children) -> None:
    init = _start_in(group, children, "sys.stdin.read()")
    job = _start_in(group, children, "sys.stdin.read()")
    assert tasks.signal_all(group, signal.SIGTERM, exclude_pids={init.pid}) == [job.pid]
    assert job.wait(timeout=WAIT) == -signal.SIGTERM
    assert init.poll() is None
    assert tasks.list_pids(group.cpu) == [init.pid]


# --------------------------------------------------------------------------- memory


def test_new_group_memory_limit_reads_unlimited(group: cgroups.CgroupPaths) -> None:
    assert memory.get_limit(group.memory) == UNLIMITED


def test_memory_limit_reads_back_page_rounded_in_both_files(group: cgroups.CgroupPaths) -> None:
    assert memory.set_limit(group.memory, 1000000) == 1003520
    assert int((group.memory / memory.MEMSW_LIMIT).read_text()) == 1003520
    assert memory.set_limit(group.memory, 64 * MiB) == 64 * MiB
    assert memory.set_limit(group.memory, 32 * MiB) == 32 * MiB


def test_memory_limit_below_usage_fails_and_keeps_both_limits(
    group: cgroups.CgroupPaths, children
) -> None:
    memory.set_limit(group.memory, 256 * MiB)
    proc = _start_in(group, children, HOLD_32_MIB)
    assert proc.stdout.readline() == "ready\n"

    with pytest.raises(CgroupError, match="^Failed setting memory limit: Device or resource busy"):
        memory.set_limit(group.memory, 4 * MiB)
    assert memory.get_limit(group.memory) == 256 * MiB
    assert int((group.memory / memory.MEMSW_LIMIT).read_text()) == 256 * MiB
    assert proc.poll() is None


def test_oom_kills_the_process_over_the_limit_and_fires_the_eventfd(
    group: cgroups.CgroupPaths, children
) -> None:
    memory.set_limit(group.memory, 16 * MiB)
    kills_before = oom.oom_kill_count(group.memory)
    with oom.OomWatch.open(group.memory) as watch:
        proc = _start_in(group, children, "b = b'x' * (64 << 20); print('survived')")
        assert _wait_readable(watch)
        assert watch.read_event() is True
    assert proc.wait(timeout=WAIT) == -signal.SIGKILL
    assert oom.oom_kill_count(group.memory) > kills_before


def test_oom_watch_wakes_on_removal_without_reporting_an_oom(real_prefix: str, group) -> None:
    with oom.OomWatch.open(group.memory) as watch:
        cgroups.remove(ROOT, real_prefix, "c1")
        assert _wait_readable(watch)
        assert watch.read_event() is False


def test_memory_stat_has_rss_and_cache_of_the_group(group: cgroups.CgroupPaths, children) -> None:
    proc = _start_in(group, children, HOLD_8_MIB)
    assert proc.stdout.readline() == "ready\n"
    result = stats.memory_stat(group.memory)
    assert "cache" in result and "total_rss" in result
    assert result["rss"] >= 8 * MiB
    assert set(result) <= set(stats.MEMORY_STAT_KEYS)


# --------------------------------------------------------------------------- cpu


def test_cpu_shares_default_then_one_reads_back_two(group: cgroups.CgroupPaths) -> None:
    assert cpu.get_shares(group.cpu) == 1024
    assert cpu.set_shares(group.cpu, 1) == 2
    assert cpu.set_shares(group.cpu, 100) == 100


def test_cpu_stat_usage_is_positive_after_a_busy_child(
    group: cgroups.CgroupPaths, children
) -> None:
    proc = _start_in(group, children, "sum(range(3_000_000))")
    assert proc.wait(timeout=WAIT) == 0
    result = stats.cpu_stat(group.cpuacct)
    assert result["usage"] > 0
    assert result["user"] >= 0 and result["system"] >= 0


def test_open_stat_files_read_fresh_values_and_close(group: cgroups.CgroupPaths, children) -> None:
    files = stats.OpenStatFiles()
    before = stats.cpu_stat(group.cpuacct, files.read)["usage"]
    proc = _start_in(group, children, "sum(range(3_000_000))")
    assert proc.wait(timeout=WAIT) == 0
    assert stats.cpu_stat(group.cpuacct, files.read)["usage"] > before  # re-read, not cached
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in files._fds.values()]
    assert sorted(os.path.basename(p) for p in held) == ["cpuacct.stat", "cpuacct.usage"]
    files.close()
    assert files._fds == {}
    still = {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
             if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not still & set(held)


# --------------------------------------------------------------------------- devices

OPEN_EACH = """
import errno
for path in {paths!r}:
    try:
        open(path, "rb").close()
        print("ok")
    except OSError as e:
        print(errno.errorcode[e.errno])
"""


def test_devices_deny_a_node_off_the_whitelist_and_allow_null(
    group: cgroups.CgroupPaths, children, tmp_path: Path
) -> None:
    mem_node, null_node = tmp_path / "mem", tmp_path / "null"
    os.mknod(mem_node, stat.S_IFCHR | 0o600, os.makedev(1, 1))
    os.mknod(null_node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    devices.restrict(group.devices)
    assert devices.allowed(group.devices) == list(devices.ALLOWED_DEVICES)

    paths = [str(mem_node), str(null_node), "/dev/null"]
    proc = _start_in(group, children, OPEN_EACH.format(paths=paths))
    out, _ = proc.communicate(timeout=WAIT)
    assert out.split() == ["EPERM", "ok", "ok"]
