"""Every kernel call of the wshd exec plugin, the seam its tests replace: the user namespace
probe (fork and unshare through ctypes), the memfd a job's script is read from, the pipe a
job's stdin comes through, the wshd launcher process, pidfds (signal, wait, reap), plain
signals, the /proc files that say which processes a container has, and files opened inside
a container's root (its /etc/passwd, a pseudo-terminal of its devpts) with openat2.

Not here: wshd's socket protocol (wshd_client.py). wshd is this plugin's own daemon and the
datagrams it reads are this plugin's own format, not a kernel interface; the socket is a
plain AF_UNIX one. Nor the job's output and status files, plain files the driver opens.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import math
import os
import select
import signal
import stat
import struct
import subprocess
import termios
from collections.abc import Sequence
from typing import Protocol

CLONE_NEWUSER = 0x10000000
# openat2(2), pidfd_send_signal(2): one number on every architecture (they came after the
# syscall tables were unified).
SYS_OPENAT2 = 437
SYS_PIDFD_SEND_SIGNAL = 424
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
# <asm-generic/ioctls.h>: unlock a new pty's slave; open the slave from the master.
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
PTMX_RDEV = os.makedev(5, 2)  # TTYAUX_MAJOR, minor 2: ptmx, of whichever devpts it sits in


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


def stdin_pipe() -> tuple[int, int]:
    """A pipe for a job's stdin: (read end, blocking, for the job; write end, non-blocking,
    for the server's event loop), both close-on-exec."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(write_end, False)
    return read_end, write_end


# ------------------------------------------------------------------------ the launcher

def start_launcher(argv: Sequence[str], pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """Start wshd's launcher with pipes on its stdin, stdout and stderr, in a session of its
    own: signals to the server's process group must not reach containers. `pass_fds` stay
    open in it (the mount seed)."""
    return subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            pass_fds=tuple(pass_fds))


def mount_namespace(pid: int) -> int:
    """A descriptor of process `pid`'s mount namespace, which keeps it alive (for setns)."""
    return os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)


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
        pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return readable(pidfd, timeout)


def pidfd_send_signal(pidfd: int, signo: int) -> None:
    """pidfd_send_signal(2), letting go of the interpreter lock for the call (ctypes does;
    Python's signal.pidfd_send_signal does not). The signal may wake its process on this
    CPU at once, and a killed container init then runs its exit there, killing the
    container's processes and putting its namespaces, for milliseconds: with the lock held,
    the server's loop waited all that time (py-spy: the call held the lock in a quarter of
    the request threads' samples while 8 clients destroyed 1,000 containers)."""
    if _libc().syscall(ctypes.c_long(SYS_PIDFD_SEND_SIGNAL), ctypes.c_int(pidfd),
                       ctypes.c_int(signo), None, ctypes.c_uint(0)) < 0:
        err = ctypes.get_errno()
        error = ProcessLookupError if err == errno.ESRCH else OSError
        raise error(err, os.strerror(err))


@functools.cache
def _libc() -> ctypes.CDLL:
    """libc through ctypes (its calls let go of the interpreter lock); syscall() returns a
    long."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


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


# ------------------------------------------------------------- inside a container's root

class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def open_process_root(pid: int) -> int:
    """An O_PATH descriptor of the root directory of `pid`: for a container's init, the
    container's own view, its mounts (devpts on /dev/pts) included. Close it."""
    return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    fd = _libc().syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), os.fsencode(path),
                         ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return int(fd)


_KINDS = {stat.S_IFREG: "regular file", stat.S_IFCHR: "character device"}


def open_in_root(root_fd: int, path: str, flags: int, kind: int,
                 rdev: int | None = None) -> int:
    """Open `path` inside the root `root_fd`, symlinks resolved as if it were / (no escape),
    only if it is a file of `kind` (stat.S_IFREG, stat.S_IFCHR) and, given `rdev`, that device.
    The check is made on an O_PATH descriptor before the real open (through /proc/self/fd, the
    same inode): the server, host root, never opens a FIFO or device a container planted."""
    pathfd = _openat2(root_fd, path, os.O_PATH | os.O_CLOEXEC,
                      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    try:
        st = os.fstat(pathfd)
        if stat.S_IFMT(st.st_mode) != kind or (rdev is not None and st.st_rdev != rdev):
            raise OSError(errno.EINVAL, f"not the {_KINDS.get(kind, 'file')} expected", path)
        return os.open(f"/proc/self/fd/{pathfd}", flags | os.O_CLOEXEC)
    finally:
        os.close(pathfd)


def read_in_root(root_fd: int, path: str, limit: int) -> bytes | None:
    """At most `limit` bytes of the regular file `path` inside the root; None if it is missing."""
    try:
        fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_NOCTTY, stat.S_IFREG)
    except FileNotFoundError:
        return None
    try:
        chunks, size = [], 0
        while size < limit and (chunk := os.read(fd, min(1 << 16, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_pty(root_fd: int, owner: tuple[int, int], rows: int, columns: int) -> tuple[int, int]:
    """A pseudo-terminal of the devpts mounted at dev/pts in the root, so that inside the
    container its slave is /dev/pts/N (ttyname works there). Returns (master, non-blocking;
    slave), both close-on-exec and neither a controlling terminal of this process; the slave
    is owned by the host ids `owner` and has the window size rows x columns."""
    master = open_in_root(root_fd, "dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK,
                          stat.S_IFCHR, PTMX_RDEV)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        set_window_size(master, rows, columns)
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            os.fchown(slave, *owner)
        except BaseException:
            os.close(slave)
            raise
    except BaseException:
        os.close(master)
        raise
    return master, slave


def set_window_size(tty_fd: int, rows: int, columns: int) -> None:
    """TIOCSWINSZ: a change reaches the terminal's foreground process group as SIGWINCH."""
    fcntl.ioctl(tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
