"""What the rootfs drivers share of the kernel: libc through ctypes, the mount table of
/proc/self/mountinfo, umount2(2) and openat2(2), MountError, and where /proc/filesystems is.

Not the mount(2) calls themselves: each driver's kernel.py makes its own (and re-exports these
names, so its kernel.py stays the one seam its tests replace). Mount state is the caller's mount
namespace's. No `mount`/`umount` process is ever run.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
from pathlib import Path

MOUNTINFO = "/proc/self/mountinfo"
PROC_FILESYSTEMS = Path("/proc/filesystems")  # each driver's check_host reads it its own way

MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

SYS_OPENAT2 = 437  # the same number on every architecture but alpha (since Linux 5.6)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class MountError(OSError):
    """A failed mount or unmount; str() is `<action> <target>: <strerror>[ (<hint>)]`."""

    def __init__(self, err: int, action: str, target: Path | str, hint: str = "") -> None:
        super().__init__(err, os.strerror(err), str(target))
        self.action = action
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.action} {self.filename}: {self.strerror}"
        return f"{text} ({self.hint})" if self.hint else text


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


@functools.cache
def libc() -> ctypes.CDLL:
    """The process's libc with errno kept and mount, umount2, syscall, setfs[ug]id typed."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                          ctypes.c_ulong, ctypes.c_char_p]
    lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.syscall.restype = ctypes.c_long
    for fn in (lib.setfsuid, lib.setfsgid):  # uid_t: host ids of user namespaces pass 2**31
        fn.argtypes, fn.restype = [ctypes.c_uint32], ctypes.c_uint32
    return lib


def unmount(target: Path) -> None:
    """Unmount `target`; a busy mount is detached lazily. Not mounted is not an error."""
    if not is_mounted(target):
        return
    if libc().umount2(os.fsencode(target), UMOUNT_NOFOLLOW) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY:
        if libc().umount2(os.fsencode(target), UMOUNT_NOFOLLOW | MNT_DETACH) == 0:
            return
        err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):  # raced with another unmount: already gone
        return
    raise MountError(err, "unmount", target)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo (octal, all ASCII).
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_points(mountinfo: str = MOUNTINFO) -> list[str]:
    """Every mount point of this mount namespace, in mount order."""
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        return [_unescape(line.split(" ", 5)[4]) for line in f]


def is_mounted(target: Path) -> bool:
    """Whether something is mounted exactly at `target` (symlinks in `target` resolved)."""
    return os.path.realpath(target) in mount_points()


def mounts_under(target: Path) -> list[str]:
    """Mount points at or below `target`, deepest first (the order to unmount them in)."""
    top = os.path.realpath(target)
    found = {p for p in mount_points() if p == top or p.startswith(top.rstrip("/") + "/")}
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """openat2(2) of `path` resolved as if `root_fd` were "/": no `..`, absolute path or
    symlink can leave the root, and /proc magic links are refused. Returns the new fd.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    encoded = os.fsencode(path)
    for _ in range(16):  # EAGAIN: a concurrent rename raced the `..` check; retry
        fd = libc().syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(root_fd),
                            ctypes.c_char_p(encoded), ctypes.byref(how),
                            ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)
