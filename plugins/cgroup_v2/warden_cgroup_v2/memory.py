"""The memory controller's limits: memory.max, and memory.swap.max held at 0.

Warden's limit_in_bytes bounds memory and swap together (v1 sets memsw equal to the limit), so
no swap beyond the limit: on v2, where swap is limited apart, that is memory.swap.max = 0.
Statistics are in `stats.py`, OOM events in `oom.py`.
"""

import errno
import os
from pathlib import Path

from . import kernel
from .errors import CgroupError

MEMORY_MAX = "memory.max"
MEMORY_SWAP_MAX = "memory.swap.max"
MEMORY_HIGH = "memory.high"
MEMORY_CURRENT = "memory.current"
NO_LIMIT = "max"
# What v1 reads for "no limit" on x86-64 (LONG_MAX rounded down to a page); clients saw it
# for years (warden-facts §5.6), so "max" reads back as this number.
UNLIMITED = 9223372036854771712

_MAX_LIMIT = 2**64 - 1  # the protocol's uint64; the kernel clamps anything above its maximum
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def set_limit(group: Path, limit: int) -> int:
    """Set memory.max to `limit` bytes (page-rounded up) and swap to 0; return memory.max.

    v1 refuses a limit below the current usage with EBUSY after trying to reclaim; v2 would
    accept it and OOM-kill until usage fits. To answer like v1, a limit below memory.current
    is first tried as memory.high (the kernel reclaims down to it, never kills), and refused
    with EBUSY if usage is still above it. On failure every file is left as it was.
    """
    if not 0 < limit <= _MAX_LIMIT:
        reason = f"{limit} is not a limit in bytes (1..2^64-1)"
        raise CgroupError(f"Failed setting memory limit: {reason}")
    limit = _round_up_to_page(limit)
    written: list[tuple[Path, str]] = []
    try:
        if (group / MEMORY_SWAP_MAX).exists():  # absent when booted without swap accounting
            _replace(group / MEMORY_SWAP_MAX, "0", written)
        if limit < _read_int(group / MEMORY_CURRENT):
            _reclaim_to(group, limit)
        _write(group / MEMORY_MAX, str(limit))
    except CgroupError:
        for control, old in reversed(written):
            _restore(control, old)
        raise
    return get_limit(group)


def get_limit(group: Path) -> int:
    """memory.max of the group in bytes; UNLIMITED for "max"."""
    try:
        return parse_limit(kernel.read_control(group / MEMORY_MAX))
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting memory limit: {e}") from e


def parse_limit(text: str) -> int:
    """A memory.max / memory.swap.max value in bytes, "max" being UNLIMITED."""
    text = text.strip()
    return UNLIMITED if text == NO_LIMIT else int(text)


def _round_up_to_page(limit: int) -> int:
    """The kernel rounds a limit down to a page; Warden's answers were rounded up (facts
    §5.6: 1000000 reads back 1003520), and a container never gets less than it asked for."""
    rounded = -(-limit // _PAGE_SIZE) * _PAGE_SIZE
    return rounded if rounded <= _MAX_LIMIT else limit


def _reclaim_to(group: Path, limit: int) -> None:
    """memory.high = limit makes the kernel reclaim down to it within the write, without OOM
    kills; memory.high is put back after, and the limit refused as v1 does if usage stays above."""
    written: list[tuple[Path, str]] = []
    try:
        _replace(group / MEMORY_HIGH, str(limit), written)
        usage = _read_int(group / MEMORY_CURRENT)
    finally:
        for control, old in written:
            _restore(control, old)
    if usage > limit:
        raise CgroupError(f"Failed setting memory limit: {os.strerror(errno.EBUSY)} "
                          f"(usage {usage} is above {limit} after reclaim)")


def _replace(control: Path, value: str, written: list[tuple[Path, str]]) -> None:
    try:
        old = kernel.read_control(control).strip()
    except OSError as e:
        reason = f"{e.strerror} (reading {control.name})"
        raise CgroupError(f"Failed setting memory limit: {reason}") from e
    _write(control, value)
    written.append((control, old))


def _read_int(control: Path) -> int:
    try:
        return int(kernel.read_control(control))
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed setting memory limit: {e}") from e


def _write(control: Path, value: str) -> None:
    try:
        kernel.write_control(control, value)
    except OSError as e:
        reason = f"{e.strerror} (writing {value} to {control.name})"
        raise CgroupError(f"Failed setting memory limit: {reason}") from e


def _restore(control: Path, old: str) -> None:
    """Put back a value the kernel held a moment ago; failing here is a kernel surprise."""
    try:
        kernel.write_control(control, old)
    except OSError as e:
        raise CgroupError(
            f"Failed setting memory limit: {e.strerror} (restoring {old} to {control.name})"
        ) from e
