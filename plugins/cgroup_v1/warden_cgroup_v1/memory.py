"""The memory controller's limits: memory.limit_in_bytes and memory.memsw.limit_in_bytes.

Statistics are in `stats.py`, OOM notification in `oom.py`.
"""

import os
from pathlib import Path

from . import kernel
from .errors import CgroupError

MEMORY_LIMIT = "memory.limit_in_bytes"
MEMSW_LIMIT = "memory.memsw.limit_in_bytes"

_MAX_LIMIT = 2**64 - 1  # the protocol's uint64; the kernel clamps anything above its maximum
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def set_limit(path: Path, limit: int) -> int:
    """Set memory and memory+swap limits to `limit` bytes; return memory.limit_in_bytes.

    The kernel refuses memory.limit_in_bytes > memory.memsw.limit_in_bytes (EINVAL), so a
    rise writes memsw first and a cut writes the plain limit first (warden-facts §5.6). On
    failure (EBUSY: usage above the new limit) the limits are left as they were.
    """
    if not 0 < limit <= _MAX_LIMIT:
        reason = f"{limit} is not a limit in bytes (1..2^64-1)"
        raise CgroupError(f"Failed setting memory limit: {reason}")
    limit = _round_up_to_page(limit)
    done: list[tuple[Path, int]] = []
    try:
        for control, old in _in_safe_order(path, limit):
            _write(control, limit)
            done.append((control, old))
    except CgroupError:
        for control, old in reversed(done):
            _restore(control, old)
        raise
    return get_limit(path)


def get_limit(path: Path) -> int:
    """memory.limit_in_bytes of the cgroup at `path` (page-rounded; 9223372036854771712 = none)."""
    try:
        return int(kernel.read_control(path / MEMORY_LIMIT))
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting memory limit: {e}") from e


def _round_up_to_page(limit: int) -> int:
    """Kernels of Warden's time rounded a limit up to a page (warden-facts §5.6: 1000000 reads
    back 1003520); since the page_counter rewrite (4.x) they round down (999424). Rounding up
    here keeps the original answers and never gives a container less than it asked for.
    Values near 2^64 stay as they are: the kernel clamps them to its maximum anyway.
    """
    rounded = -(-limit // _PAGE_SIZE) * _PAGE_SIZE
    return rounded if rounded <= _MAX_LIMIT else limit


def _in_safe_order(path: Path, limit: int) -> list[tuple[Path, int]]:
    """The limit files with their current values, in an order the kernel accepts."""
    if not (path / MEMSW_LIMIT).exists():  # kernel booted without swap accounting
        return [(path / MEMORY_LIMIT, _read_for_set(path / MEMORY_LIMIT))]
    plain = (path / MEMORY_LIMIT, _read_for_set(path / MEMORY_LIMIT))
    memsw = (path / MEMSW_LIMIT, _read_for_set(path / MEMSW_LIMIT))
    return [memsw, plain] if limit > memsw[1] else [plain, memsw]


def _read_for_set(control: Path) -> int:
    try:
        return int(kernel.read_control(control))
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed setting memory limit: {e}") from e


def _write(control: Path, limit: int) -> None:
    try:
        kernel.write_control(control, str(limit))
    except OSError as e:
        reason = f"{e.strerror} (writing {limit} to {control.name})"
        raise CgroupError(f"Failed setting memory limit: {reason}") from e


def _restore(control: Path, old: int) -> None:
    """Put back a value the kernel accepted a moment ago; failing here is a kernel surprise."""
    try:
        kernel.write_control(control, str(old))
    except OSError as e:
        raise CgroupError(
            f"Failed setting memory limit: {e.strerror} (restoring {old} to {control.name})"
        ) from e
