"""Every system call of this plugin: control files, groups and signals (the core's cgroupfs,
named here), pidfds for killing and waiting, and the eventfd of OOM notification.

Control files are plain files, so unit tests point the callers at a tmp_path root and
replace only what a plain directory cannot imitate (mkdir populating control files, rmdir
of a non-empty directory, signals) with fakes, as youki's cgroup tests do.
"""

import os
import select
import signal
import time
from collections.abc import Iterable
from pathlib import Path

# Control files, groups, kill and pids.max are the core's, named here too, where unit tests
# replace them.
from warden_framework.cgroupfs import (  # noqa: F401
    kill,
    make_group,
    pread_text,
    read_control,
    remove_group,
    set_pids_max,
    write_control,
)


def oom_eventfd(oom_control: Path, event_control: Path) -> int:
    """A new non-blocking eventfd, registered through `event_control` (cgroup.event_control)
    for the OOM events of `oom_control` (memory.oom_control); closing it unregisters it.

    The kernel keeps only the eventfd; the oom_control fd is needed just while registering.
    """
    eventfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        control_fd = os.open(oom_control, os.O_RDONLY | os.O_CLOEXEC)
        try:
            write_control(event_control, f"{eventfd} {control_fd}")
        finally:
            os.close(control_fd)
    except BaseException:
        os.close(eventfd)
        raise
    return eventfd


def read_eventfd(eventfd: int) -> int:
    """The counter of the non-blocking `eventfd`, reset to 0; 0 when nothing is pending."""
    try:
        return os.eventfd_read(eventfd)
    except BlockingIOError:
        return 0


def kill_and_wait(pids: Iterable[int], sig: int, timeout: float) -> list[int]:
    """Send `sig` to each pid through a pidfd and wait up to `timeout` s for all to exit.

    Returns the pids still alive at the deadline. A pidfd becomes readable when the whole
    thread group has exited, which is after the kernel took it out of its cgroups, so no
    polling is needed.
    """
    pidfds: dict[int, int] = {}
    try:
        for pid in pids:
            fd = _pidfd_open(pid)
            if fd is not None and _pidfd_signal(fd, sig):
                pidfds[fd] = pid
        return _wait_pidfds(pidfds, timeout)
    finally:
        for fd in pidfds:
            os.close(fd)


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _pidfd_signal(pidfd: int, sig: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        return False
    return True


def _wait_pidfds(pidfds: dict[int, int], timeout: float) -> list[int]:
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    waiting = set(pidfds)
    deadline = time.monotonic() + timeout
    while waiting:
        left_ms = max(0, int((deadline - time.monotonic()) * 1000))
        events = poller.poll(left_ms)
        if not events:
            break
        for fd, _ in events:
            poller.unregister(fd)
            waiting.discard(fd)
    return sorted(pidfds[fd] for fd in waiting)
