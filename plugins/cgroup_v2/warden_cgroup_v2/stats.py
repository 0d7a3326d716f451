"""Usage statistics for Info in Warden's v1 shapes: memory.stat (+ memory.swap.current and
the limits) as MemoryStat, cpu.stat as CpuStat. The mapping table is in the README."""

import os
from collections.abc import Callable
from pathlib import Path

from warden_framework.cgroupfs import MEMORY_STAT_KEYS, OpenStatFiles  # noqa: F401 (named here)

from . import events, kernel
from .errors import CgroupError
from .memory import MEMORY_MAX, MEMORY_SWAP_MAX, UNLIMITED, parse_limit

MEMORY_STAT = "memory.stat"
MEMORY_SWAP_CURRENT = "memory.swap.current"
CPU_STAT = "cpu.stat"


# MemoryStat field <- v2 memory.stat key. v2 has no pgpgin/pgpgout: those stay unset.
FROM_MEMORY_STAT = {
    "cache": "file", "rss": "anon", "mapped_file": "file_mapped",
    "pgfault": "pgfault", "pgmajfault": "pgmajfault",
    "inactive_anon": "inactive_anon", "active_anon": "active_anon",
    "inactive_file": "inactive_file", "active_file": "active_file",
    "unevictable": "unevictable",
}  # fmt: skip

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # v1's cpuacct.stat counts USER_HZ ticks

Reader = Callable[[Path], str]


def memory_stat(group: Path, files: OpenStatFiles | None = None) -> dict[str, int]:
    """MemoryStat fields of the group (a leaf), its limits taken with its parent's (the prefix)."""
    own = files or OpenStatFiles()
    try:
        stat = events.parse(own.read(group / MEMORY_STAT))
        swap = own.read_if_present(group / MEMORY_SWAP_CURRENT)
        limits = [(own.read_if_present(g / MEMORY_MAX), own.read_if_present(g / MEMORY_SWAP_MAX))
                  for g in (group, group.parent)]
        return map_memory_stat(stat, None if swap is None else int(swap), limits)
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting memory usage: {e}") from e
    finally:
        if files is None:
            own.close()


def map_memory_stat(stat: dict[str, int], swap: int | None,
                    limits: list[tuple[str | None, str | None]]) -> dict[str, int]:
    """v2 numbers in v1's MemoryStat fields (README, "memory.stat mapping").

    `limits` holds (memory.max, memory.swap.max) texts of the group and its ancestors, None
    where a file is missing. v2 counts include nested groups already, and the container's
    group is a leaf, so every total_* equals its plain field.
    """
    fields = {field: stat[key] for field, key in FROM_MEMORY_STAT.items() if key in stat}
    if swap is not None:
        fields["swap"] = swap
    memory_limits = [parse_limit(m) for m, _ in limits if m is not None]
    swap_limits = [parse_limit(s) for _, s in limits if s is not None]
    if memory_limits:
        fields["hierarchical_memory_limit"] = min(memory_limits)
        if swap_limits:
            memsw = min(memory_limits) + min(swap_limits)
            fields["hierarchical_memsw_limit"] = min(UNLIMITED, memsw)
    for field in list(fields):
        if f"total_{field}" in MEMORY_STAT_KEYS:
            fields[f"total_{field}"] = fields[field]
    return fields


def usage_bytes(stat: dict[str, int], swap: int) -> int:
    """Memory in use that reclaim cannot simply drop: file + anon + swap - inactive_file
    (guardian#469). With FROM_MEMORY_STAT, a client's v1 sum total_cache + total_rss +
    total_swap - total_inactive_file gives this same number."""
    return stat.get("file", 0) + stat.get("anon", 0) + swap - stat.get("inactive_file", 0)


def cpu_stat(group: Path, read: Reader = kernel.read_control) -> dict[str, int]:
    """usage in ns (v1's cpuacct.usage) and user/system in USER_HZ ticks (v1's cpuacct.stat),
    from the microseconds of cpu.stat (present in every group, with or without the cpu
    controller)."""
    try:
        stat = events.parse(read(group / CPU_STAT))
        return {"usage": stat["usage_usec"] * 1000,
                "user": stat["user_usec"] * _CLOCK_TICKS // 1_000_000,
                "system": stat["system_usec"] * _CLOCK_TICKS // 1_000_000}
    except KeyError as e:
        raise CgroupError(f"Failed getting cpu stats: no {e} in {CPU_STAT}") from e
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting cpu stats: {e}") from e
