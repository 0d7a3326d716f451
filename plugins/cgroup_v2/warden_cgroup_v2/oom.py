"""OOM notification for a cgroup v2 group: inotify on memory.events, no helper process and no
polling. An OOM kill is `oom_kill` going up, not `oom`: `oom` also counts the times the
kernel found the group at its limit and then reclaimed or failed a charge without killing
anyone (containerd#6734), which v1's notifier never reported as an OOM.
"""

import os
from pathlib import Path

from . import events, kernel
from .errors import CgroupError


class OomWatch:
    """An inotify descriptor, readable when memory.events of the group changed; `read_event`
    then says whether the change was an OOM kill since the last look."""

    def __init__(self, group: Path, fd: int, kills: int) -> None:
        self.group = group
        self._fd = fd
        self._kills = kills

    @classmethod
    def open(cls, group: Path) -> "OomWatch":
        """Watch the group from now on; kills that happened before do not count."""
        events_file = group / events.MEMORY_EVENTS
        try:
            fd = kernel.inotify_open(events_file)
        except OSError as e:
            raise CgroupError(f"watch out-of-memory events of cgroup {group}: {e.strerror}") from e
        try:
            return cls(group, fd, oom_kill_count(group))
        except CgroupError:
            os.close(fd)
            raise

    def fileno(self) -> int:
        """The inotify descriptor (for select or loop.add_reader)."""
        return self._fd

    def read_event(self) -> bool:
        """Consume pending notifications; True if the OOM killer killed in the group since the
        last call. False for other changes (high, max) and once the group is gone."""
        kernel.inotify_drain(self._fd)
        try:
            kills = oom_kill_count(self.group)
        except CgroupError:
            return False  # removed: its watch fired IN_IGNORED
        seen, self._kills = kills > self._kills, max(kills, self._kills)
        return seen

    def close(self) -> None:
        """Close the descriptor, which also drops the watch. Idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "OomWatch":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def oom_kill_count(group: Path) -> int:
    """How many processes the OOM killer killed in the group (`oom_kill` of memory.events)."""
    try:
        return events.read(group / events.MEMORY_EVENTS)[events.OOM_KILL]
    except (OSError, ValueError, KeyError) as e:
        raise CgroupError(f"read {events.OOM_KILL} of cgroup {group}: {e}") from e
