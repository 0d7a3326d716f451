"""Every kernel call of the wshd exec plugin, the seam its tests replace: the user namespace
probe (fork and unshare through ctypes), the memfd a job's script is read from, the wshd
launcher process, pidfds (signal, wait, reap), plain signals, and the /proc files that say
which processes a container has.

Not here: wshd's socket protocol (wshd_client.py). wshd is this plugin's own daemon and the
datagrams it reads are this plugin's own format, not a kernel interface; the socket is a
plain AF_UNIX one. Nor the job's output and status files, plain files the driver opens.
"""

from __future__ import annotations

import ctypes
import math
import os
import select
import signal
import subprocess
from collections.abc import Sequence
from typing import Protocol

CLONE_NEWUSER = 0x10000000


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def user_namespace_refusal() -> str | None:
    """None if a child can unshare a user namespace, else the kernel's reason."""
    pid = os.fork()
    if pid == 0:  # the child only makes the call and reports its errno as the exit status
        libc = ctypes.CDLL(None, use_errno=True)
        os._exit(0 if libc.unshare(CLONE_NEWUSER) == 0 else ctypes.get_errno() or 255)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    return os.strerror(code) if code > 0 else f"the probe died of signal {-code}"


def memfd_holding(name: str, data: bytes) -> int:
    """A memfd named `name` holding `data`, positioned at its start (close it)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


# ------------------------------------------------------------------------ the launcher

def start_launcher(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start wshd's launcher with pipes on its stdin, stdout and stderr, in a session of its
    own: signals to the server's process group must not reach containers."""
    return subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def communicate(proc: subprocess.Popen[bytes],
                timeout: float | None = None) -> tuple[bytes, bytes] | None:
    """(stdout, stderr) of `proc` once it has exited; None if it is still running after
    `timeout` seconds (None: wait as long as it takes)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Reap `proc`, SIGKILLing it if it has not exited within `timeout` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------- pidfds, signals

def readable(fd: int | HasFileno, timeout: float) -> bool:
    """Whether `fd` (a number or an object with fileno()) is readable within `timeout`
    seconds. poll, not select: select() refuses descriptors from 1024 up, which a server
    with many containers or clients holds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(timeout * 1000))))


def pidfd_open(pid: int) -> int:
    """A pidfd of `pid` (close it); ProcessLookupError if there is no such process."""
    return os.pidfd_open(pid)


def pidfd_kill(pidfd: int, timeout: float) -> bool:
    """SIGKILL through a pidfd and wait until the process has exited; False on timeout."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return readable(pidfd, timeout)


def kill_and_reap(pid: int, timeout: float) -> bool:
    """SIGKILL `pid` and wait for its exit; False if it is still there after `timeout` s.

    Reaped here if it is our child (we are a child subreaper, prctl PR_SET_CHILD_SUBREAPER),
    else by whoever adopted it. A pid already gone is done.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if not pidfd_kill(pidfd, timeout):
            return False
        try:
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            pass  # not our child: its own reaper collects it
        return True
    finally:
        os.close(pidfd)


def kill(pid: int, signo: int) -> bool:
    """Send `signo` to `pid`; False if there is no such process (any more)."""
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------ /proc

def children(pid: int) -> list[int]:
    """The children of every thread of `pid` (/proc/<pid>/task/*/children); [] once it is
    gone. The kernel lists them without stopping anything, so a fork may slip past."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found += [int(word) for word in f.read().split()]
        except OSError:
            continue
    return found


def is_zombie(pid: int) -> bool:
    """Whether `pid` has exited (a zombie, or gone altogether)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def cmdline(pid: int) -> list[bytes] | None:
    """The arguments of `pid` from /proc/<pid>/cmdline, None if there is no such process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None
