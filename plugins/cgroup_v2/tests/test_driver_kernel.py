"""The CgroupV2Driver through its hooks on a cgroup2 root with memory, cpu and pids (the
pure-v2 qemu guest; skipped, saying why, on this host). A container's init is born in its
group the way the exec driver does it, limits are read back from the kernel, an OOM kill
fires the event source, and nothing is left after release_limits and teardown_host."""

import errno
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from warden_cgroup_v2 import cpu, devices, groups, memory, oom
from warden_framework import cgroupfs as pids
from warden_cgroup_v2.driver import CgroupV2Driver
from warden_framework.config import settings_from_dict
from warden_framework.container import Container
from warden_framework.errors import WardenError

pytestmark = pytest.mark.integration

MiB = 1 << 20
WAIT = 60.0  # deadline for the kernel to act (TCG guests are slow); never reached when it works
PIDS_LIMIT = 16
HOLD = "b = b'x' * ({mib} << 20); print('ready', flush=True); sys.stdin.read()"
FORK_UNTIL_REFUSED = """
import errno, time
made = 0
while made < 64:
    try:
        pid = os.fork()
    except OSError as e:
        print(made, errno.errorcode[e.errno], flush=True)
        break
    if pid == 0:  # hold a pid, but not the test's pipes: the reaper would wait for them
        os.closerange(0, 3); time.sleep(60); os._exit(0)
    made += 1
sys.stdin.read()
"""


@pytest.fixture
def driver(v2_controllers: Path, v2_prefix_name: str):
    """A driver with its own prefix, set up as the server does; v2_prefix_name removes it."""
    settings = settings_from_dict({"server": {
        "name_prefix": v2_prefix_name, "cgroup_root": str(v2_controllers),
        "container_pids_limit": PIDS_LIMIT}})
    CgroupV2Driver.check_host(settings)
    drv = CgroupV2Driver(settings)
    drv.setup_host(settings=settings)
    yield drv
    drv.teardown_host(settings=settings)


@pytest.fixture
def container(driver, tmp_path):
    """A container whose init (a shell, then sleep) joined through the record's "tasks"."""
    c = Container(id="t" + os.urandom(5).hex(), handle="h", path=tmp_path)
    c.records["limits"] = driver.apply_limits(container=c, settings=driver.settings)
    join = 'for f in "$@"; do echo 0 > "$f" || exit 1; done; echo joined; exec sleep 600'
    init = subprocess.Popen(["sh", "-c", join, "sh", *c.records["limits"]["tasks"]],
                            stdout=subprocess.PIPE)
    joined = init.stdout.readline()
    init.stdout.close()
    c.records["exec"] = {"pid": init.pid}
    try:
        assert joined == b"joined\n"
        yield c
    finally:
        try:
            driver.release_limits(container=c, record=c.records.get("limits"))
        finally:
            init.kill()
            init.wait(timeout=WAIT)


def _group(driver, container) -> Path:
    return driver._group(container)


def _start_in(group: Path, v2_children, code: str):
    proc = v2_children.start(code, join=groups.procs_file(group))
    assert proc.stdout.readline() == "joined\n"
    v2_children.go(proc)
    return proc


# --------------------------------------------------------------------------- apply / release


def test_hook_apply_limits_makes_a_leaf_group_the_init_is_born_in(driver, container):
    record, group = container.records["limits"], _group(driver, container)
    assert record == {"prefix": driver.prefix, "cgroup": "v2", "group": str(group),
                      "tasks": [str(group / "cgroup.procs")]}
    assert groups.pids(group) == [container.records["exec"]["pid"]]
    assert (group / "cgroup.subtree_control").read_text().split() == []
    assert {"memory", "cpu", "pids"} <= set((group / "cgroup.controllers").read_text().split())
    assert (group / pids.PIDS_MAX).read_text().strip() == str(PIDS_LIMIT)
    assert devices.attached(group) == 1


def test_hook_release_limits_kills_what_is_left_and_is_idempotent(driver, container, v2_children):
    group = _group(driver, container)
    worker = _start_in(group, v2_children, "sys.stdin.read()")
    driver.release_limits(container=container, record=container.records["limits"])
    assert worker.wait(timeout=WAIT) == -signal.SIGKILL
    assert not group.exists()
    driver.release_limits(container=container, record=None)


# --------------------------------------------------------------------------- memory


def test_hook_limit_memory_sets_max_closes_swap_and_reads_back(driver, container):
    group = _group(driver, container)
    assert driver.limit_memory(container=container, limit=None) == memory.UNLIMITED
    assert driver.limit_memory(container=container, limit=100 * MiB) == 100 * MiB
    assert (group / memory.MEMORY_MAX).read_text().strip() == str(100 * MiB)
    if (group / memory.MEMORY_SWAP_MAX).exists():
        assert (group / memory.MEMORY_SWAP_MAX).read_text().strip() == "0"
    page = os.sysconf("SC_PAGE_SIZE")
    assert driver.limit_memory(container=container, limit=1000000) == -(-1000000 // page) * page
    assert driver.limit_memory(container=container, limit=2**64 - 1) == memory.UNLIMITED
    with pytest.raises(WardenError, match="^Failed setting memory limit"):
        driver.limit_memory(container=container, limit=0)


def test_limit_below_usage_is_refused_as_on_v1_and_the_process_lives(driver, container,
                                                                      v2_children):
    group = _group(driver, container)
    driver.limit_memory(container=container, limit=256 * MiB)
    hog = _start_in(group, v2_children, HOLD.format(mib=32))
    assert hog.stdout.readline() == "ready\n"
    with pytest.raises(WardenError, match="^Failed setting memory limit: Device or resource busy"):
        driver.limit_memory(container=container, limit=4 * MiB)
    assert driver.limit_memory(container=container, limit=None) == 256 * MiB
    assert (group / memory.MEMORY_HIGH).read_text().strip() == "max"
    assert hog.poll() is None


def test_hook_event_sources_fire_out_of_memory_on_an_oom_kill(driver, container, v2_children):
    group = _group(driver, container)
    assert driver.event_sources(container=container) == []  # no memory limit yet
    container.memory_limit = 16 * MiB
    driver.limit_memory(container=container, limit=container.memory_limit)
    (source,) = driver.event_sources(container=container)
    assert driver.event_sources(container=container) == [source]  # one watch per container
    kills = oom.oom_kill_count(group)

    hog = _start_in(group, v2_children, "b = bytearray(64 << 20); print('survived')")
    assert _events_until_oom(source) == "out of memory"
    assert hog.wait(timeout=WAIT) == -signal.SIGKILL
    assert oom.oom_kill_count(group) > kills
    assert source.read_event() is None  # nothing new since


def _events_until_oom(source) -> str | None:
    """Read the source as the server's event loop does, on every wake-up, until it reports
    an event: reaching memory.max wakes it too (the `max` counter), and reads None."""
    deadline = time.monotonic() + WAIT
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([source.fileno()], [], [], left)
        if ready and (event := source.read_event()) is not None:
            return event
    return None


# --------------------------------------------------------------------------- cpu


def test_hook_limit_cpu_writes_the_weight_and_reads_back_what_was_set(driver, container):
    group = _group(driver, container)
    assert driver.limit_cpu(container=container, shares=None) == 1024  # a new group's weight 100
    for shares in (0, 1, 2, 3, 512, 1000, 1024, 5000, 100000, 262144, 300000):
        kept = driver.limit_cpu(container=container, shares=shares)
        container.cpu_shares = shares  # what the orchestrator remembers
        assert int((group / cpu.CPU_WEIGHT).read_text()) == cpu.shares_to_weight(shares)
        read_back = driver.limit_cpu(container=container, shares=None)
        assert kept == read_back == min(max(shares, 2), 262144), shares


# --------------------------------------------------------------------------- pids


def test_pids_limit_refuses_forks_past_it_with_eagain(driver, container, v2_children):
    group = _group(driver, container)
    forker = _start_in(group, v2_children, FORK_UNTIL_REFUSED)
    made, error = forker.stdout.readline().split()
    assert error == errno.errorcode[errno.EAGAIN]
    assert pids.pid_stat(group) == {"current": PIDS_LIMIT, "limit": PIDS_LIMIT}
    assert int(made) == PIDS_LIMIT - 2  # the init and the forker hold two


# --------------------------------------------------------------------------- info


def test_hook_info_numbers_follow_a_process_using_memory_and_cpu(driver, container, v2_children):
    group = _group(driver, container)
    before = driver.info(container=container)
    hog = _start_in(group, v2_children, "sum(range(3_000_000)); " + HOLD.format(mib=24))
    assert hog.stdout.readline() == "ready\n"
    after = driver.info(container=container)

    assert after["memory_stat"]["rss"] >= before["memory_stat"]["rss"] + 24 * MiB
    assert after["memory_stat"]["total_rss"] == after["memory_stat"]["rss"]
    assert after["memory_stat"]["hierarchical_memory_limit"] == memory.UNLIMITED
    assert after["cpu_stat"]["usage"] > before["cpu_stat"]["usage"]
    assert after["pid_stat"] == {"current": before["pid_stat"]["current"] + 1, "limit": PIDS_LIMIT}


# --------------------------------------------------------------------------- recover


def test_hook_recover_puts_back_every_limit(driver, container):
    group = _group(driver, container)
    container.memory_limit, container.cpu_shares = 64 * MiB, 512
    driver.limit_memory(container=container, limit=container.memory_limit)
    driver.limit_cpu(container=container, shares=container.cpu_shares)
    clobbered = ((memory.MEMORY_MAX, "max"), (cpu.CPU_WEIGHT, "100"), (pids.PIDS_MAX, "max"))
    for name, value in clobbered:
        (group / name).write_text(value)

    driver.recover(container=container, settings=driver.settings)
    assert int((group / memory.MEMORY_MAX).read_text()) == 64 * MiB
    assert int((group / cpu.CPU_WEIGHT).read_text()) == cpu.shares_to_weight(512)
    assert (group / pids.PIDS_MAX).read_text().strip() == str(PIDS_LIMIT)
    assert driver.limit_cpu(container=container, shares=None) == 512
    assert devices.attached(group) == 1


def test_hook_recover_attaches_the_device_program_when_it_is_missing(driver, tmp_path):
    c = Container(id="t" + os.urandom(5).hex(), handle="h", path=tmp_path)
    group = _group(driver, c)
    groups.create(group)  # as if the server died before the program was attached
    c.records["limits"] = {"prefix": driver.prefix, "cgroup": "v2", "group": str(group)}
    try:
        assert devices.attached(group) == 0
        driver.recover(container=c, settings=driver.settings)
        assert devices.attached(group) == 1
    finally:
        driver.release_limits(container=c, record=c.records["limits"])


def test_hook_recover_fails_naming_the_missing_group(driver, container):
    driver.release_limits(container=container, record=None)
    expected = f"^cgroup of {container.id} is missing: .*{container.id}"
    with pytest.raises(WardenError, match=expected):
        driver.recover(container=container, settings=driver.settings)


def test_hook_teardown_host_is_idempotent(driver, container):
    driver.release_limits(container=container, record=None)
    driver.teardown_host(settings=driver.settings)
    driver.teardown_host(settings=driver.settings)
    assert not (driver.root / driver.prefix).exists()
    driver.setup_host(settings=driver.settings)  # the fixture's finalizer removes it again
