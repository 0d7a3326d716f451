"""Usage statistics for Info: memory.stat (memory) and cpuacct.usage/cpuacct.stat (cpuacct)."""

import os
import threading
from collections.abc import Callable
from pathlib import Path

from . import kernel
from .errors import CgroupError

MEMORY_STAT = "memory.stat"
CPUACCT_USAGE = "cpuacct.usage"
CPUACCT_STAT = "cpuacct.stat"

# The MemoryStat message's fields, in field-number order (warden-facts §1.4).
MEMORY_STAT_KEYS = (
    "cache", "rss", "mapped_file", "pgpgin", "pgpgout", "swap", "pgfault", "pgmajfault",
    "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
    "hierarchical_memory_limit", "hierarchical_memsw_limit",
    "total_cache", "total_rss", "total_mapped_file", "total_pgpgin", "total_pgpgout",
    "total_swap", "total_pgfault", "total_pgmajfault", "total_inactive_anon",
    "total_active_anon", "total_inactive_file", "total_active_file", "total_unevictable",
)  # fmt: skip


Reader = Callable[[Path], str]


class OpenStatFiles:
    """A container's statistics files, kept open and re-read with pread: the kernel writes
    a control file afresh for every read from offset 0, and after an idle spell the open and
    close cost twice the read (~35 of ~55 us). Info, which every Run answers with, reads three."""

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()

    def read(self, path: Path) -> str:
        """The file's text now; under the lock, so a close never frees a number in use."""
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return kernel.pread_text(fd)

    def close(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)


def memory_stat(path: Path, read: Reader = kernel.read_control) -> dict[str, int]:
    """The MEMORY_STAT_KEYS present in memory.stat of the memory cgroup at `path`."""
    try:
        text = read(path / MEMORY_STAT)
        return {
            key: int(value)
            for key, value in (line.split() for line in text.splitlines() if line.strip())
            if key in MEMORY_STAT_KEYS
        }
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting memory usage: {e}") from e


def cpu_stat(cpuacct_path: Path, read: Reader = kernel.read_control) -> dict[str, int]:
    """usage (ns, cpuacct.usage) and user/system (USER_HZ ticks, cpuacct.stat)."""
    try:
        usage = int(read(cpuacct_path / CPUACCT_USAGE))
        text = read(cpuacct_path / CPUACCT_STAT)
        ticks = dict(line.split() for line in text.splitlines())
        return {"usage": usage, "user": int(ticks["user"]), "system": int(ticks["system"])}
    except KeyError as e:
        raise CgroupError(f"Failed getting cpu stats: no {e} in {CPUACCT_STAT}") from e
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting cpu stats: {e}") from e
