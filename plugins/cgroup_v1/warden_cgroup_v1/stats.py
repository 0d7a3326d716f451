"""Usage statistics for Info: memory.stat (memory) and cpuacct.usage/cpuacct.stat (cpuacct)."""

from collections.abc import Callable
from pathlib import Path

from warden_framework.cgroupfs import MEMORY_STAT_KEYS, OpenStatFiles  # noqa: F401 (named here)

from . import kernel
from .errors import CgroupError

MEMORY_STAT = "memory.stat"
CPUACCT_USAGE = "cpuacct.usage"
CPUACCT_STAT = "cpuacct.stat"


Reader = Callable[[Path], str]


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
