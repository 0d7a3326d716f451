"""OOM notification for a memory cgroup through cgroup.event_control: an eventfd, no helper
process and no polling (the original ran a C notifier per container, warden-facts §11.3).
The eventfd itself is made and read by `kernel.py`; this module says what its events mean.
"""

import os
from pathlib import Path

from . import kernel
from .errors import CgroupError

MEMORY_OOM_CONTROL = "memory.oom_control"
CGROUP_EVENT_CONTROL = "cgroup.event_control"


class OomWatch:
    """An eventfd the kernel signals when the memory cgroup hits its limit and the OOM
    killer runs, and once more when the cgroup is removed.

    `read_event` tells the two apart by the cgroup's existence, not by `oom_kill` or
    `under_oom` in memory.oom_control: the kernel signals before it picks a victim and clears
    `under_oom` right after, so both counters can still read "no OOM" when the reader wakes.
    The removal signal comes only after rmdir took the directory away, so a wake-up while
    memory.oom_control still exists is an OOM. If an OOM and the removal are both pending at
    the read (counter > 1), the OOM is reported.
    """

    def __init__(self, memory_path: Path, eventfd: int) -> None:
        self.memory_path = memory_path
        self._eventfd = eventfd

    @classmethod
    def open(cls, memory_path: Path) -> "OomWatch":
        """Register a new non-blocking eventfd for OOM events of the cgroup at `memory_path`."""
        try:
            eventfd = kernel.oom_eventfd(memory_path / MEMORY_OOM_CONTROL,
                                         memory_path / CGROUP_EVENT_CONTROL)
        except OSError as e:
            reason = f"watch out-of-memory events of cgroup {memory_path}: {e.strerror}"
            raise CgroupError(reason) from e
        return cls(memory_path, eventfd)

    def fileno(self) -> int:
        """The eventfd, readable when an event is pending (for select or loop.add_reader)."""
        return self._eventfd

    def read_event(self) -> bool:
        """Consume pending events; True if an OOM occurred, False for removal or nothing."""
        count = kernel.read_eventfd(self._eventfd)
        if not count:
            return False
        return count > 1 or (self.memory_path / MEMORY_OOM_CONTROL).exists()

    def close(self) -> None:
        """Close the eventfd, which also unregisters it from the kernel. Idempotent."""
        if self._eventfd >= 0:
            os.close(self._eventfd)
            self._eventfd = -1

    def __enter__(self) -> "OomWatch":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def oom_kill_count(path: Path) -> int:
    """How many processes the OOM killer killed in the cgroup (`oom_kill` of memory.oom_control)."""
    try:
        text = kernel.read_control(path / MEMORY_OOM_CONTROL)
        return int(dict(line.split() for line in text.splitlines())["oom_kill"])
    except (OSError, ValueError, KeyError) as e:
        raise CgroupError(f"read oom_kill of cgroup {path}: {e}") from e
