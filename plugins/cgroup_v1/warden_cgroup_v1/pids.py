"""The pids controller: how many processes (and threads) a container may hold (pids.max)."""

from pathlib import Path

from . import kernel
from .errors import CgroupError

PIDS_MAX = "pids.max"
PIDS_CURRENT = "pids.current"
UNLIMITED = "max"


def set_max(path: Path, limit: int | None) -> None:
    """Write pids.max; None or 0 means no limit."""
    try:
        kernel.write_control(path / PIDS_MAX, str(limit) if limit else UNLIMITED)
    except OSError as e:
        raise CgroupError(f"Failed setting pids limit: {e.strerror}") from e


def pid_stat(path: Path, read=kernel.read_control) -> dict[str, int]:
    """current and limit (0: none) of the pids cgroup at `path`."""
    try:
        current = int(read(path / PIDS_CURRENT))
        limit = read(path / PIDS_MAX).strip()
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting pids stats: {e}") from e
    return {"current": current, "limit": 0 if limit == UNLIMITED else int(limit)}
