"""The cpu controller: the container's relative share of CPU time (cpu.shares)."""

from pathlib import Path

from . import kernel
from .errors import CgroupError

CPU_SHARES = "cpu.shares"


def set_shares(path: Path, shares: int) -> int:
    """Write cpu.shares and return what the kernel kept (it clamps to 2..262144)."""
    if shares < 0:
        raise CgroupError(f"Failed setting cpu shares: {shares} is negative")
    try:
        kernel.write_control(path / CPU_SHARES, str(shares))
    except OSError as e:
        raise CgroupError(f"Failed setting cpu shares: {e.strerror}") from e
    return get_shares(path)


def get_shares(path: Path) -> int:
    """The cpu.shares of the cgroup at `path` (1024 for a new group)."""
    try:
        return int(kernel.read_control(path / CPU_SHARES))
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting cpu shares: {e}") from e
