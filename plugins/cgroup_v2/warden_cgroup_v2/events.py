"""The flat-keyed files of cgroup v2 (`key value` lines): parsing them (the stat files too),
and waiting with inotify until `cgroup.events` shows a value. Acting on values is elsewhere."""

import os
from pathlib import Path

from . import kernel

CGROUP_EVENTS = "cgroup.events"
MEMORY_EVENTS = "memory.events"
POPULATED = "populated"
FROZEN = "frozen"
OOM_KILL = "oom_kill"


def parse(text: str) -> dict[str, int]:
    """`key value` lines to a dict; ValueError naming the line that is not one."""
    counters = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise ValueError(f"not a 'key value' line: {line!r}")
        counters[fields[0]] = int(fields[1])
    return counters


def read(path: Path) -> dict[str, int]:
    """The counters of the flat-keyed file at `path`."""
    return parse(kernel.read_control(path))


def wait_for(group: Path, key: str, value: int, deadline: float) -> bool:
    """Wait until `cgroup.events` of `group` shows `key value`, or the monotonic deadline.

    The watch is set before the first read, so a change between that read and the wait still
    wakes the wait. Returns whether the value was reached.
    """
    events_file = group / CGROUP_EVENTS
    fd = kernel.inotify_open(events_file)
    try:
        while read(events_file).get(key) != value:
            if not kernel.wait_readable(fd, deadline):
                return read(events_file).get(key) == value
            kernel.inotify_drain(fd)
        return True
    finally:
        os.close(fd)
