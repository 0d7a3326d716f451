"""Unit tests of the per-controller modules (memory, cpu, devices, stats, oom) on a fake root."""

import errno
import os
import signal
from pathlib import Path

import pytest

from warden_cgroup_v1 import cgroups, cpu, devices, kernel, memory, oom, stats, tasks
from warden_cgroup_v1.errors import CgroupError

UNLIMITED = 9223372036854771712


@pytest.fixture
def group(fake_fs) -> cgroups.CgroupPaths:
    return cgroups.create(fake_fs.root, "pfx", "c1", fake_fs.hierarchies())


def _memory_writes(fake_fs) -> list[tuple[str, str]]:
    return [(path.name, value) for path, value in fake_fs.writes if path.name.startswith("memory.")]


# --------------------------------------------------------------------------- memory


def test_set_limit_below_memsw_writes_plain_limit_first(fake_fs, group) -> None:
    fake_fs.writes.clear()
    assert memory.set_limit(group.memory, 1003520) == 1003520
    assert _memory_writes(fake_fs) == [
        ("memory.limit_in_bytes", "1003520"),
        ("memory.memsw.limit_in_bytes", "1003520"),
    ]


def test_set_limit_above_memsw_writes_memsw_first(fake_fs, group) -> None:
    memory.set_limit(group.memory, 1003520)
    fake_fs.writes.clear()
    assert memory.set_limit(group.memory, 2002944) == 2002944
    assert _memory_writes(fake_fs) == [
        ("memory.memsw.limit_in_bytes", "2002944"),
        ("memory.limit_in_bytes", "2002944"),
    ]


def test_set_limit_below_usage_fails_and_leaves_both_limits(fake_fs, group) -> None:
    memory.set_limit(group.memory, 5242880)
    fake_fs.memory_usage = 3000000
    with pytest.raises(CgroupError, match="^Failed setting memory limit: Device or resource busy"):
        memory.set_limit(group.memory, 1003520)
    assert memory.get_limit(group.memory) == 5242880
    assert int((group.memory / memory.MEMSW_LIMIT).read_text()) == 5242880


def test_set_limit_restores_the_first_file_when_the_second_write_fails(
    fake_fs, group, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory.set_limit(group.memory, 5242880)
    fake_write = kernel.write_control

    def memsw_busy(path: Path, value: str) -> None:
        if path.name == memory.MEMSW_LIMIT and value == "1003520":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        fake_write(path, value)

    monkeypatch.setattr(kernel, "write_control", memsw_busy)
    with pytest.raises(CgroupError, match=r"memory\.memsw\.limit_in_bytes"):
        memory.set_limit(group.memory, 1003520)
    assert memory.get_limit(group.memory) == 5242880
    assert int((group.memory / memory.MEMSW_LIMIT).read_text()) == 5242880


def test_set_limit_rounds_up_to_a_page_as_warden_answered(fake_fs, group) -> None:
    assert memory.set_limit(group.memory, 1000000) == 1003520
    assert memory.set_limit(group.memory, 4096) == 4096
    assert memory.set_limit(group.memory, 2**64 - 1) == 2**64 - 1


@pytest.mark.parametrize("limit", [0, -1, 2**64])
def test_set_limit_refuses_values_that_are_not_a_byte_count(fake_fs, group, limit: int) -> None:
    fake_fs.writes.clear()
    with pytest.raises(CgroupError, match=f"^Failed setting memory limit: {limit} is not a limit"):
        memory.set_limit(group.memory, limit)
    assert fake_fs.writes == []


def test_set_limit_without_swap_accounting_writes_only_the_limit(fake_fs, group) -> None:
    (group.memory / memory.MEMSW_LIMIT).unlink()
    fake_fs.writes.clear()
    assert memory.set_limit(group.memory, 1003520) == 1003520
    assert _memory_writes(fake_fs) == [("memory.limit_in_bytes", "1003520")]


def test_get_limit_of_a_new_group_is_unlimited(group) -> None:
    assert memory.get_limit(group.memory) == UNLIMITED


# --------------------------------------------------------------------------- cpu


def test_set_shares_returns_what_the_file_holds(group) -> None:
    assert cpu.get_shares(group.cpu) == 1024
    assert cpu.set_shares(group.cpu, 100) == 100


def test_set_shares_on_a_missing_group_fails_with_warden_text(fake_fs) -> None:
    with pytest.raises(CgroupError, match="^Failed setting cpu shares: No such file or directory"):
        cpu.set_shares(fake_fs.root / "cpu" / "nope", 100)


# --------------------------------------------------------------------------- devices


def test_restrict_denies_all_then_allows_the_whitelist_one_rule_per_write(fake_fs, group) -> None:
    fake_fs.writes.clear()
    devices.restrict(group.devices)
    assert fake_fs.writes[0] == (group.devices / "devices.deny", "a")
    allowed = [value for path, value in fake_fs.writes[1:] if path.name == "devices.allow"]
    assert allowed == list(devices.ALLOWED_DEVICES)
    assert "c 1:3 rwm" in allowed and "c 136:* rwm" in allowed and "c 10:229 rwm" not in allowed and "c 5:1 rwm" not in allowed


# --------------------------------------------------------------------------- stats


MEMORY_STAT_TEXT = """cache 4096
rss 8192
rss_huge 0
shmem 0
mapped_file 0
swap 0
pgfault 10
total_cache 4096
total_rss 8192
total_unevictable 0
workingset_refault_file 3
"""


def test_memory_stat_keeps_only_memory_stat_message_fields(group) -> None:
    (group.memory / stats.MEMORY_STAT).write_text(MEMORY_STAT_TEXT)
    result = stats.memory_stat(group.memory)
    assert result == {
        "cache": 4096, "rss": 8192, "mapped_file": 0, "swap": 0, "pgfault": 10,
        "total_cache": 4096, "total_rss": 8192, "total_unevictable": 0,
    }  # fmt: skip
    assert len(stats.MEMORY_STAT_KEYS) == 28


def test_memory_stat_of_a_missing_group_fails_with_warden_text(fake_fs) -> None:
    with pytest.raises(CgroupError, match="^Failed getting memory usage: "):
        stats.memory_stat(fake_fs.root / "memory" / "nope")


def test_cpu_stat_reads_usage_user_and_system(group) -> None:
    (group.cpuacct / stats.CPUACCT_USAGE).write_text("123456789\n")
    (group.cpuacct / stats.CPUACCT_STAT).write_text("user 12\nsystem 3\n")
    assert stats.cpu_stat(group.cpuacct) == {"usage": 123456789, "user": 12, "system": 3}


def test_cpu_stat_with_garbage_fails_with_warden_text(group) -> None:
    (group.cpuacct / stats.CPUACCT_USAGE).write_text("lots\n")
    with pytest.raises(CgroupError, match="^Failed getting cpu stats: "):
        stats.cpu_stat(group.cpuacct)


# --------------------------------------------------------------------------- oom


def test_oom_kill_count_reads_the_oom_kill_line(group) -> None:
    control = group.memory / oom.MEMORY_OOM_CONTROL
    control.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert oom.oom_kill_count(group.memory) == 3


def test_oom_watch_registers_eventfd_and_oom_control_fds(fake_fs, group) -> None:
    fake_fs.writes.clear()
    with oom.OomWatch.open(group.memory) as watch:
        [(path, value)] = fake_fs.writes
        assert path == group.memory / oom.CGROUP_EVENT_CONTROL
        eventfd, control_fd = map(int, value.split())
        assert eventfd == watch.fileno()
        assert control_fd != eventfd
        assert watch.read_event() is False  # nothing signalled yet


def test_oom_watch_event_is_an_oom_while_the_group_exists(group) -> None:
    with oom.OomWatch.open(group.memory) as watch:
        os.eventfd_write(watch.fileno(), 1)
        assert watch.read_event() is True


def test_oom_watch_single_event_after_removal_is_not_an_oom(fake_fs, group) -> None:
    with oom.OomWatch.open(group.memory) as watch:
        cgroups.remove(fake_fs.root, "pfx", "c1", hierarchies=fake_fs.hierarchies())
        os.eventfd_write(watch.fileno(), 1)
        assert watch.read_event() is False


def test_oom_watch_open_on_a_missing_group_fails_naming_it(fake_fs) -> None:
    missing = fake_fs.root / "memory" / "nope"
    with pytest.raises(CgroupError, match=f"out-of-memory events of cgroup {missing}"):
        oom.OomWatch.open(missing)


# --------------------------------------------------------------------------- tasks


def test_signal_all_signals_every_process_once_except_excluded(
    fake_fs, group, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(kernel, "kill", lambda pid, sig: sent.append((pid, sig)) or pid != 30)
    for directory in group.directories():
        fake_fs.put_process(directory, 10)
    fake_fs.put_process(group.cpu, 20)
    fake_fs.put_process(group.memory, 30)
    assert tasks.signal_all(group, signal.SIGTERM, exclude_pids={10}) == [20]
    assert sent == [(20, signal.SIGTERM), (30, signal.SIGTERM)]


def test_list_pids_reads_cgroup_procs(fake_fs, group) -> None:
    fake_fs.put_process(group.memory, 5)
    fake_fs.put_process(group.memory, 6)
    assert tasks.list_pids(group.memory) == [5, 6]
