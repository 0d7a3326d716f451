"""The limits contract: what every limits driver must do to the processes of a container,
whatever its mechanism (cgroup v1 hierarchies, the unified v2 hierarchy, a future one), as a
pytest class a plugin subclasses (STYLE §6.7; the rootfs one is contract.py).

A plugin's tests/test_limits_contract.py:

    class TestCgroupV2LimitsContract(LimitsContract):
        driver_class = CgroupV2Driver

        def skip_reason(self, settings):
            ...  # e.g. the driver's check_host message, or None

Every test is shown by processes, as the kernel treats them: a child that joins the
container's groups the way the init does (writing "0" to each file the record's "tasks"
names) and then allocates, forks, burns CPU or opens devices. Hooks are called by keyword,
as pluggy calls them, so a misnamed parameter fails here.
"""

from __future__ import annotations

import errno
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..config import Settings, settings_from_dict
from ..container import OUT_OF_MEMORY, Container, IdGenerator
from ..errors import WardenError
from .driver_contract import DriverContract

MiB = 1 << 20
PIDS_LIMIT = 24
WAIT = 30.0  # seconds for the kernel to act; never reached when things work

# The child joins the groups, says so, then runs the workload (hex on one line of stdin).
_JOIN = """
import os, sys
for tasks in sys.argv[1:]:
    with open(tasks, "w") as f:
        f.write("0")
print("joined", flush=True)
exec(bytes.fromhex(sys.stdin.readline()).decode())
"""


# Forks children that wait on the shared stdin until the count or the kernel says stop.
FORK_BOMB = """
n = 0
try:
    while n < 200:
        if os.fork() == 0:
            os.read(0, 1)
            os._exit(0)
        n += 1
except OSError as e:
    print("refused", n, e.errno, flush=True)
else:
    print("forked", n, flush=True)
"""
MAKE_BLOCK_DEVICE = """
os.close(os.open("/dev/null", os.O_WRONLY))
try:
    os.mknod("{node}", 0o600 | 0o060000, os.makedev(7, 0))
    made = "made"
except OSError as e:
    made = e.errno
print("null ok mknod", made, flush=True)
"""
BUSY_WITH_16_MIB = """
import time
b = b"x" * (16 << 20)
start = time.process_time()
while time.process_time() - start < 0.2:
    pass
print("busy", flush=True)
"""


class LimitsContract(DriverContract):
    """What a limits driver guarantees: see hookspecs apply_limits, release_limits,
    limit_memory, limit_cpu, info, event_sources, recover, setup_host and teardown_host.

    A subclass sets `driver_class` and may override `skip_reason` and `settings_data`.
    """

    # ---- what a subclass may change (and skip_reason, DriverContract's) ---------------------

    def settings_data(self, prefix: str) -> dict:
        return {"server": {"name_prefix": prefix, "container_pids_limit": PIDS_LIMIT}}

    # ---- fixtures --------------------------------------------------------------------------

    @pytest.fixture
    def limits_settings(self) -> Settings:
        # "wt": a prefix the leak checker looks for
        settings = settings_from_dict(self.settings_data("wtl" + secrets.token_hex(3)))
        if os.geteuid() != 0:
            pytest.skip("needs root: limits are made in the real kernel")
        reason = self.skip_reason(settings)
        if reason:
            pytest.skip(reason)
        return settings

    @pytest.fixture
    def driver(self, limits_settings: Settings) -> Iterator[Any]:
        driver = self.driver_class(limits_settings)
        _host_hook(driver, "setup_host", limits_settings)
        yield driver
        _host_hook(driver, "teardown_host", limits_settings)

    @pytest.fixture
    def container(self, driver: Any, limits_settings: Settings, tmp_path: Path) -> Iterator[Container]:
        cid = IdGenerator()()
        c = Container(id=cid, handle=f"limits-{cid}", path=tmp_path / cid)
        c.path.mkdir()
        c.records["limits"] = driver.apply_limits(container=c, settings=limits_settings)
        yield c
        driver.release_limits(container=c, record=c.records["limits"])

    @pytest.fixture
    def start_inside(self, container: Container) -> Iterator[Callable[[str], subprocess.Popen]]:
        """start_inside(code): a child in the container's groups running `code` (Python;
        `sys` and `os` are imported), with a pipe on stdout and stdin left open (children
        may block on it). Every child is killed, with what it forked, before the release."""
        children: list[subprocess.Popen] = []

        def start(code: str) -> subprocess.Popen:
            child = subprocess.Popen(
                [sys.executable, "-S", "-c", _JOIN, *container.records["limits"]["tasks"]],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                start_new_session=True)
            children.append(child)
            assert child.stdout.readline().strip() == "joined"
            child.stdin.write(code.encode().hex() + "\n")
            child.stdin.flush()
            return child

        yield start
        for child in children:
            _kill(child)

    # ---- apply_limits / release_limits ----------------------------------------------------

    def test_apply_limits_names_tasks_files_the_init_can_join(self, container, start_inside):
        tasks = container.records["limits"]["tasks"]
        assert tasks and all(os.path.isfile(path) for path in tasks)
        child = start_inside("sys.stdin.readline()")
        for path in tasks:  # a tasks file lists the pids in its group, as cgroup.procs does
            assert str(child.pid) in Path(path).read_text().split(), path

    def test_release_limits_is_idempotent_and_takes_a_missing_record(self, driver, limits_settings,
                                                                     tmp_path):
        cid = IdGenerator()()
        c = Container(id=cid, handle=cid, path=tmp_path / cid)
        record = driver.apply_limits(container=c, settings=limits_settings)
        driver.release_limits(container=c, record=record)
        driver.release_limits(container=c, record=record)
        driver.release_limits(container=c, record=None)
        assert not any(os.path.exists(path) for path in record["tasks"])

    def test_setup_host_twice_changes_nothing(self, driver, limits_settings, container):
        _host_hook(driver, "setup_host", limits_settings)
        assert all(os.path.isfile(path) for path in container.records["limits"]["tasks"])

    # ---- memory ----------------------------------------------------------------------------

    def test_limit_memory_reads_back_what_the_kernel_kept(self, driver, container):
        kept = driver.limit_memory(container=container, limit=64 * MiB)
        assert kept == 64 * MiB
        container.memory_limit = 64 * MiB  # as the orchestrator keeps it after the hook
        assert driver.limit_memory(container=container, limit=None) == 64 * MiB

    def test_a_job_past_its_memory_limit_is_killed_and_the_event_fires(self, driver, container,
                                                                       start_inside):
        driver.limit_memory(container=container, limit=32 * MiB)
        container.memory_limit = 32 * MiB
        sources = driver.event_sources(container=container)
        assert sources, "a container with a memory limit must have an OOM event source"
        hog = start_inside("b = [b'x' * (1 << 20) for _ in range(256)]")
        assert hog.wait(WAIT) == -signal.SIGKILL
        assert _event(sources, WAIT) == OUT_OF_MEMORY

    def test_no_event_without_an_oom(self, driver, container, start_inside):
        driver.limit_memory(container=container, limit=64 * MiB)
        container.memory_limit = 64 * MiB
        sources = driver.event_sources(container=container)
        child = start_inside("b = b'x' * (8 << 20); print('ok', flush=True)")
        assert child.stdout.readline().strip() == "ok"
        assert _event(sources, 0.3) is None

    # ---- cpu -------------------------------------------------------------------------------

    @pytest.mark.parametrize("shares", [2, 100, 512, 1024, 4096, 65536])
    def test_limit_cpu_reads_back_the_shares_set(self, driver, container, shares):
        assert driver.limit_cpu(container=container, shares=shares) == shares
        container.cpu_shares = shares  # as the orchestrator keeps it after the hook
        assert driver.limit_cpu(container=container, shares=None) == shares

    # ---- pids ------------------------------------------------------------------------------

    def test_a_fork_bomb_stops_at_the_pids_limit(self, container, start_inside):
        bomb = start_inside(FORK_BOMB)
        words = bomb.stdout.readline().split()
        assert words[0] == "refused" and int(words[1]) < PIDS_LIMIT, words
        assert int(words[2]) == errno.EAGAIN

    def test_hook_limit_pids_lowers_the_limit_a_fork_bomb_meets(self, driver, container,
                                                               start_inside):
        """limit_pids: Returns the limit the kernel kept; shown by the fork bomb stopping
        at the new, lower limit, and 0 lifting it."""
        assert driver.limit_pids(container=container, limit=None) == PIDS_LIMIT
        assert driver.limit_pids(container=container, limit=8) == 8
        bomb = start_inside(FORK_BOMB)
        words = bomb.stdout.readline().split()
        assert words[0] == "refused" and int(words[1]) < 8, words
        assert driver.limit_pids(container=container, limit=0) == 0

    def test_recover_keeps_a_containers_own_pids_limit(self, driver, limits_settings, container):
        """recover re-applies container.pids_limit, not the server's default."""
        driver.limit_pids(container=container, limit=12)
        container.pids_limit = 12  # as the orchestrator keeps it after the hook
        again = self.driver_class(limits_settings)
        again.recover(container=container, settings=limits_settings)
        assert again.limit_pids(container=container, limit=None) == 12

    # ---- devices ---------------------------------------------------------------------------

    def test_a_process_inside_can_use_null_but_cannot_make_a_block_device(self, container,
                                                                          tmp_path, start_inside):
        node = tmp_path / "loop0"
        probe = start_inside(MAKE_BLOCK_DEVICE.format(node=str(node)))
        assert probe.stdout.readline().split() == ["null", "ok", "mknod", str(errno.EPERM)]
        assert not node.exists()

    # ---- info ------------------------------------------------------------------------------

    def test_info_reports_memory_cpu_and_pids_of_the_processes_inside(self, driver, container,
                                                                      start_inside):
        child = start_inside(BUSY_WITH_16_MIB)
        assert child.stdout.readline().strip() == "busy"
        fields = driver.info(container=container)  # `full` is optional
        memory = fields["memory_stat"]
        assert memory["rss"] >= 16 * MiB or memory.get("total_rss", 0) >= 16 * MiB, memory
        assert fields["cpu_stat"]["usage"] >= 200_000_000, fields["cpu_stat"]  # ns
        assert fields["pid_stat"]["current"] >= 1

    # ---- recover ---------------------------------------------------------------------------

    def test_recover_reapplies_the_limits_after_a_restart(self, limits_settings, container):
        first = self.driver_class(limits_settings)
        first.limit_memory(container=container, limit=48 * MiB)
        first.limit_cpu(container=container, shares=300)
        container.memory_limit, container.cpu_shares = 48 * MiB, 300
        again = self.driver_class(limits_settings)  # a new server: nothing in memory
        again.recover(container=container, settings=limits_settings)
        assert again.limit_memory(container=container, limit=None) == 48 * MiB
        assert again.limit_cpu(container=container, shares=None) == 300

    def test_recover_of_a_container_whose_groups_are_gone_fails(self, driver, limits_settings,
                                                                 tmp_path):
        cid = IdGenerator()()
        c = Container(id=cid, handle=cid, path=tmp_path / cid)
        c.records["limits"] = driver.apply_limits(container=c, settings=limits_settings)
        driver.release_limits(container=c, record=c.records["limits"])
        with pytest.raises(WardenError, match=cid):
            driver.recover(container=c, settings=limits_settings)


def _host_hook(driver: Any, name: str, settings: Settings) -> None:
    """setup_host and teardown_host are optional: a driver without them has no host state."""
    hook = getattr(driver, name, None)
    if hook is not None:
        hook(settings=settings)


def _event(sources: list, timeout: float) -> str | None:
    poller = select.poll()
    for source in sources:
        poller.register(source, select.POLLIN)
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(remaining * 1000):
            event = next(s for s in sources if s.fileno() == fd).read_event()
            if event is not None:
                return event
    return None


def _kill(child: subprocess.Popen) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            stream.close()
