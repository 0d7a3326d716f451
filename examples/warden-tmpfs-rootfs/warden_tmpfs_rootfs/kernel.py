"""The tmpfs driver's only contact with the kernel: mount(2) of a tmpfs, umount2(2), the mount
table, openat2(2) RESOLVE_IN_ROOT, setfsuid(2)/setfsgid(2) and statvfs(2). No `mount` process
is ever run; mount state is this process's mount namespace's.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROC_FILESYSTEMS = Path("/proc/filesystems")
MOUNTINFO = "/proc/self/mountinfo"
MS_NOSUID = 0x2
MS_NODEV = 0x4
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
SYS_OPENAT2 = 437  # x86_64, arm64 and every other architecture but alpha (Linux 5.6+)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
_UNMOUNT_ROUNDS = 8  # one per stacked mount; more means something keeps mounting there


class MountError(OSError):
    """A failed mount or unmount; str() is `<action> <target>: <strerror>[ (<hint>)]`."""

    def __init__(self, err: int, action: str, target: Path | str, hint: str = "") -> None:
        super().__init__(err, os.strerror(err), str(target))
        self.action, self.hint = action, hint

    def __str__(self) -> str:
        text = f"{self.action} {self.filename}: {self.strerror}"
        return f"{text} ({self.hint})" if self.hint else text


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


@functools.cache
def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                          ctypes.c_ulong, ctypes.c_char_p]
    lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.syscall.restype = ctypes.c_long
    for fn in (lib.setfsuid, lib.setfsgid):  # uid_t: host ids of user namespaces pass 2**31
        fn.argtypes, fn.restype = [ctypes.c_uint32], ctypes.c_uint32
    return lib


def has_tmpfs(proc_filesystems: Path = PROC_FILESYSTEMS) -> bool:
    """Whether the kernel offers tmpfs (a `nodev\ttmpfs` line)."""
    with open(proc_filesystems) as f:
        return "\ttmpfs\n" in f.read()


def mount_tmpfs(target: Path, size: int, mode: int, uid: int, gid: int) -> None:
    """Mount a new tmpfs of at most `size` bytes on `target`, its root owned uid:gid with
    `mode`; nosuid and nodev, so a set-uid file or device node container root makes there is
    inert on the host."""
    data = f"size={size},mode={mode:o},uid={uid},gid={gid}".encode()
    if _libc().mount(b"tmpfs", os.fsencode(target), b"tmpfs", MS_NOSUID | MS_NODEV, data) != 0:
        err = ctypes.get_errno()
        hint = "the kernel has no tmpfs (CONFIG_TMPFS)" if err == errno.ENODEV else ""
        raise MountError(err, "mount tmpfs on", target, hint)


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, in mount order."""
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
        return [_OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line.split(" ", 5)[4])
                for line in f]


def is_mounted(target: Path) -> bool:
    return os.path.realpath(target) in mount_points()


def mounts_under(target: Path) -> list[str]:
    """Mount points at or below `target`, deepest first (the order to unmount them in)."""
    top = os.path.realpath(target)
    found = {p for p in mount_points() if p == top or p.startswith(top.rstrip("/") + "/")}
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def unmount_all(target: Path) -> None:
    """Unmount everything at or below `target`; a busy mount is detached lazily (the files
    live on while a process holds them, and go with the last one)."""
    for _ in range(_UNMOUNT_ROUNDS):
        points = mounts_under(target)
        if not points:
            return
        for point in points:
            _unmount(point)
    raise MountError(errno.EBUSY, "unmount", target, "something keeps mounting there")


def _unmount(point: str) -> None:
    path = os.fsencode(point)
    if _libc().umount2(path, UMOUNT_NOFOLLOW) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY:
        if _libc().umount2(path, UMOUNT_NOFOLLOW | MNT_DETACH) == 0:
            return
        err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOENT):  # those: another unmount got there first
        raise MountError(err, "unmount", point)


def open_in_root(root_fd: int, path: str, flags: int = O_DIR) -> int:
    """openat2(2) of `path` as if `root_fd` were "/": no `..`, absolute path or symlink can
    leave the root, and /proc magic links are refused. Returns the new fd."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    encoded = os.fsencode(path or "/")
    for _ in range(16):  # EAGAIN: a concurrent rename raced the kernel's `..` check
        fd = _libc().syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(root_fd),
                             ctypes.c_char_p(encoded), ctypes.byref(how),
                             ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


@contextmanager
def fs_ids(uid: int, gid: int) -> Iterator[None]:
    """Run the block with this thread's file system ids set to uid:gid: the kernel then checks
    every write as that user's (a non-zero fsuid also drops the thread's file capabilities,
    which come back with fsuid 0). Linux keeps them per thread, so other threads are unaffected.
    """
    lib = _libc()
    lib.setfsgid(gid)
    lib.setfsuid(uid)
    try:
        if lib.setfsuid(uid) != uid or lib.setfsgid(gid) != gid:  # returns the previous ids
            raise PermissionError(errno.EPERM, f"cannot take file system ids {uid}:{gid}")
        yield
    finally:
        lib.setfsuid(0)
        lib.setfsgid(0)


def usage(target: Path) -> tuple[int, int]:
    """(bytes, inodes) in use on the filesystem mounted at `target`: tmpfs counts them itself."""
    st = os.statvfs(target)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree
