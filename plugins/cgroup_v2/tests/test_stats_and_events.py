"""Pure logic: parsing the flat-keyed files, memory.stat and cpu.stat in v1's shapes, and the
order and rollback of the memory limit writes, on plain files under tmp_path."""

import os

import pytest

from warden_cgroup_v2 import events, memory, stats
from warden_cgroup_v2.errors import CgroupError

# memory.stat of a 6.1 group holding a process with 8 MiB of anonymous memory.
MEMORY_STAT_TEXT = """\
anon 8523776
file 2105344
kernel 294912
kernel_stack 16384
pagetables 77824
shmem 0
file_mapped 1351680
file_dirty 0
swapcached 0
inactive_anon 8491008
active_anon 32768
inactive_file 1400832
active_file 704512
unevictable 0
slab 165648
pgfault 3271
pgmajfault 3
oom_kill 0
"""
MiB = 1 << 20


# --------------------------------------------------------------------------- events


def test_parse_reads_cgroup_events_and_memory_events():
    assert events.parse("populated 1\nfrozen 0\n") == {"populated": 1, "frozen": 0}
    text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 1\noom_group_kill 0\n"
    assert events.parse(text)[events.OOM_KILL] == 1


@pytest.mark.parametrize("line", ["populated", "populated yes", "a 1 2"])
def test_parse_names_a_line_that_is_not_key_value(line):
    with pytest.raises(ValueError, match=f"not a 'key value' line: {line!r}"):
        events.parse(f"frozen 0\n{line}\n")


# --------------------------------------------------------------------------- memory.stat


def test_memory_stat_fields_come_from_their_v2_counterparts():
    fields = stats.map_memory_stat(events.parse(MEMORY_STAT_TEXT), 4096, [("max", "0")])
    assert fields["cache"] == 2105344 and fields["rss"] == 8523776
    assert fields["mapped_file"] == 1351680 and fields["swap"] == 4096
    assert fields["pgfault"] == 3271 and fields["pgmajfault"] == 3
    assert fields["inactive_file"] == 1400832 and fields["active_anon"] == 32768
    assert "pgpgin" not in fields and "pgpgout" not in fields  # v2 does not count them
    assert set(fields) <= set(stats.MEMORY_STAT_KEYS)


def test_total_fields_equal_the_plain_ones_for_a_leaf_group():
    fields = stats.map_memory_stat(events.parse(MEMORY_STAT_TEXT), 0, [("max", "0")])
    totals = {k: v for k, v in fields.items() if k.startswith("total_")}
    assert totals and all(v == fields[k.removeprefix("total_")] for k, v in totals.items())


def test_hierarchical_limits_are_the_smallest_up_the_tree():
    limits = [(str(64 * MiB), "0"), (str(16 * MiB), "max")]
    fields = stats.map_memory_stat({}, 0, limits)
    assert fields["hierarchical_memory_limit"] == 16 * MiB
    assert fields["hierarchical_memsw_limit"] == 16 * MiB  # no swap beyond memory, as v1's memsw
    unlimited = stats.map_memory_stat({}, 0, [("max", "max"), ("max", "max")])
    assert unlimited["hierarchical_memory_limit"] == memory.UNLIMITED
    assert unlimited["hierarchical_memsw_limit"] == memory.UNLIMITED


def test_without_swap_accounting_swap_fields_are_left_out():
    fields = stats.map_memory_stat(events.parse(MEMORY_STAT_TEXT), None, [("max", None)])
    assert "swap" not in fields and "hierarchical_memsw_limit" not in fields
    assert fields["hierarchical_memory_limit"] == memory.UNLIMITED


def test_a_v1_client_usage_sum_gives_the_v2_working_set():
    stat = events.parse(MEMORY_STAT_TEXT)
    fields = stats.map_memory_stat(stat, 4096, [("max", "0")])
    client_sum = (fields["total_cache"] + fields["total_rss"] + fields["total_swap"]
                  - fields["total_inactive_file"])
    assert client_sum == stats.usage_bytes(stat, 4096) == 2105344 + 8523776 + 4096 - 1400832


@pytest.fixture
def group_files(tmp_path):
    """A plain directory with a prefix above it, holding the files the stat readers read."""
    group = tmp_path / "prefix" / "c1"
    group.mkdir(parents=True)
    (group / stats.MEMORY_STAT).write_text(MEMORY_STAT_TEXT)
    (group / memory.MEMORY_MAX).write_text(f"{32 * MiB}\n")
    (group / memory.MEMORY_SWAP_MAX).write_text("0\n")
    (group / stats.MEMORY_SWAP_CURRENT).write_text("0\n")
    (group.parent / memory.MEMORY_MAX).write_text("max\n")
    (group / stats.CPU_STAT).write_text(
        "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n")
    return group


def test_memory_stat_reads_the_group_and_its_prefix_through_open_files(group_files):
    files = stats.OpenStatFiles()
    try:
        first = stats.memory_stat(group_files, files)
        changed = MEMORY_STAT_TEXT.replace("anon 8523776", "anon 1")
        (group_files / stats.MEMORY_STAT).write_text(changed)
        assert stats.memory_stat(group_files, files)["rss"] == 1  # read afresh, not cached
    finally:
        files.close()
    assert first["rss"] == 8523776 and first["hierarchical_memory_limit"] == 32 * MiB


def test_memory_stat_without_memory_stat_fails_with_warden_text(tmp_path):
    with pytest.raises(CgroupError, match="^Failed getting memory usage: .*No such file"):
        stats.memory_stat(tmp_path)


def test_cpu_stat_reports_nanoseconds_and_user_hz_ticks(group_files):
    ticks = os.sysconf("SC_CLK_TCK")
    assert stats.cpu_stat(group_files) == {
        "usage": 1_500_000_000, "user": ticks, "system": ticks // 2}


def test_cpu_stat_without_usage_names_the_key(tmp_path):
    (tmp_path / stats.CPU_STAT).write_text("user_usec 1\nsystem_usec 1\n")
    with pytest.raises(CgroupError, match="^Failed getting cpu stats: no 'usage_usec' in cpu.stat"):
        stats.cpu_stat(tmp_path)


# --------------------------------------------------------------------------- memory limit


@pytest.fixture
def memory_files(tmp_path):
    for name, text in ((memory.MEMORY_MAX, "max\n"), (memory.MEMORY_SWAP_MAX, "max\n"),
                       (memory.MEMORY_HIGH, "max\n"), (memory.MEMORY_CURRENT, "0\n")):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_limit_is_rounded_up_to_a_page_and_swap_is_closed(memory_files):
    page = os.sysconf("SC_PAGE_SIZE")
    assert memory.set_limit(memory_files, 1000000) == -(-1000000 // page) * page
    assert (memory_files / memory.MEMORY_SWAP_MAX).read_text() == "0"


def test_max_reads_back_as_the_v1_unlimited_number(memory_files):
    assert memory.get_limit(memory_files) == 9223372036854771712


@pytest.mark.parametrize("limit", [0, -1, 2**64])
def test_limit_outside_the_protocol_range_is_refused(memory_files, limit):
    with pytest.raises(CgroupError, match=f"^Failed setting memory limit: {limit} is not a limit"):
        memory.set_limit(memory_files, limit)


def test_limit_below_usage_that_does_not_reclaim_is_refused_and_nothing_changes(memory_files):
    (memory_files / memory.MEMORY_CURRENT).write_text(f"{32 * MiB}\n")
    with pytest.raises(CgroupError, match="^Failed setting memory limit: Device or resource busy"):
        memory.set_limit(memory_files, 4 * MiB)
    for name in (memory.MEMORY_MAX, memory.MEMORY_SWAP_MAX, memory.MEMORY_HIGH):
        assert (memory_files / name).read_text().strip() == "max", name


def test_a_failed_max_write_puts_swap_back(memory_files):
    (memory_files / memory.MEMORY_MAX).unlink()
    expected = "^Failed setting memory limit: No such file .*memory.max"
    with pytest.raises(CgroupError, match=expected):
        memory.set_limit(memory_files, 4 * MiB)
    assert (memory_files / memory.MEMORY_SWAP_MAX).read_text().strip() == "max"
