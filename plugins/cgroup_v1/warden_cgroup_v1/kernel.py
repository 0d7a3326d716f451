"""Every system call of this plugin except the eventfd registration of `oom.py`.

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


def read_control(path: Path) -> str:
    """Return the whole text of a control file: open, read to the end, close, and nothing
    else (a Python text file adds an fstat, an ioctl and two seeks; Info reads three)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return pread_text(fd)
    finally:
        os.close(fd)


def pread_text(fd: int) -> str:
    """The whole text of the open control file `fd`, read afresh from offset 0."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("ascii")


def write_control(path: Path, value: str) -> None:
    """Write `value` to a control file in one write(2): the kernel parses one value per write.

    No O_CREAT: writing a control file that does not exist is an error, in a fake root too.
    """
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def make_group(path: Path) -> bool:
    """mkdir a cgroup; return False if it already existed."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return False
    return True


def remove_group(path: Path) -> bool:
    """rmdir a cgroup; return False if it did not exist. EBUSY and the like raise OSError."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return False
    return True


def kill(pid: int, sig: int) -> bool:
    """Send `sig` to `pid`; return False if the process is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


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
