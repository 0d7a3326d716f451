"""Every system call of this plugin except the bpf(2) calls of the device program.

Control files are plain files, so pure logic is tested on a tmp_path directory; what a plain
directory cannot imitate (populated, frozen, oom_kill) is tested on the real kernel.
inotify and statfs have no stdlib wrapper, so they go through libc with ctypes.
"""

import ctypes
import functools
import os
import select
import signal
import time
from pathlib import Path

# Control files, groups and kill are the core's, named here too, where unit tests replace them.
from warden_framework.cgroupfs import (  # noqa: F401
    kill,
    make_group,
    pread_text,
    read_control,
    remove_group,
    write_control,
)

IN_MODIFY = 0x00000002
_IN_NONBLOCK = os.O_NONBLOCK  # the inotify flags are the open(2) flags, by definition
_IN_CLOEXEC = os.O_CLOEXEC
# struct statfs is 120 bytes on 64-bit Linux; f_type (a long) comes first.
_STATFS_SIZE = 256


def kill_all(pids: list[int]) -> None:
    """SIGKILL each pid; those already gone are skipped."""
    for pid in pids:
        kill(pid, signal.SIGKILL)


def filesystem_magic(path: Path) -> int:
    """statfs(2) f_type of the filesystem holding `path` (CGROUP2_SUPER_MAGIC for cgroup2)."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc().statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def inotify_open(path: Path, mask: int = IN_MODIFY) -> int:
    """A non-blocking inotify descriptor watching `path`; kernfs signals IN_MODIFY on every
    change of a notifying control file (cgroup.events, memory.events)."""
    fd = _libc().inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "inotify_init1")
    if _libc().inotify_add_watch(fd, os.fsencode(path), mask) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, os.strerror(err), str(path))
    return fd


def inotify_drain(fd: int) -> bool:
    """Consume every queued inotify event; True if there was at least one."""
    seen = False
    while True:
        try:
            if not os.read(fd, 4096):
                return seen
        except BlockingIOError:
            return seen
        seen = True


def wait_readable(fd: int, deadline: float) -> bool:
    """Block until `fd` is readable or the monotonic `deadline` passes; True if readable."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    left_ms = max(0, int((deadline - time.monotonic()) * 1000))
    return bool(poller.poll(left_ms))


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.statfs.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.inotify_init1.argtypes = (ctypes.c_int,)
    libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    return libc
