"""Every kernel call of warden_rootfs_common, the seam its tests replace: libc through ctypes,
the mount table of /proc/self/mountinfo, umount2(2), openat2(2), the file system ids of a
thread (setfsuid/setfsgid), and the calls behind an idmapped mount (a user namespace made by
clone(2) with its maps written to /proc/<pid>/uid_map, open_tree, mount_setattr, move_mount),
and which filesystems /proc/filesystems lists.

Not the union mount(2) calls themselves: each driver's kernel.py makes its own and re-exports
what it uses from here, so its kernel.py stays the one seam its tests replace. Mount state is
the caller's mount namespace's. No `mount`/`umount` process is ever run.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

MOUNTINFO = "/proc/self/mountinfo"
PROC_FILESYSTEMS = Path("/proc/filesystems")  # each driver's check_host reads it its own way

MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

SYS_OPENAT2 = 437  # the same number on every architecture but alpha (since Linux 5.6)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x100000
CLONE_VM = 0x100
CLONE_NEWUSER = 0x10000000
_CHILD_STACK = 16384

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


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


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


def has_filesystem(name: str, proc_filesystems: Path = PROC_FILESYSTEMS) -> bool:
    """Whether the kernel lists filesystem type `name` (lines `[nodev]\\t<name>`)."""
    text = Path(proc_filesystems).read_text(encoding="ascii", errors="replace")
    return any(line.split()[-1:] == [name] for line in text.splitlines())


# ------------------------------------------------------------------ mount table, unmount

def unmount(target: Path) -> None:
    """Unmount `target`; a busy mount is detached lazily. Not mounted is not an error (the
    kernel says EINVAL: asked first, every unmount read the whole mount table, which grows
    with the number of containers)."""
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


class _Statx(ctypes.Structure):
    """struct statx up to stx_attributes_mask; the kernel writes 256 bytes (_STATX_SIZE)."""

    _fields_ = [("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32),
                ("attributes", ctypes.c_uint64), ("nlink", ctypes.c_uint32),
                ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("mode", ctypes.c_uint16),
                ("spare0", ctypes.c_uint16), ("ino", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("blocks", ctypes.c_uint64), ("attributes_mask", ctypes.c_uint64)]


_STATX_SIZE = 256
STATX_ATTR_MOUNT_ROOT = 0x2000  # since Linux 5.8


def is_mounted(target: Path) -> bool:
    """Whether something is mounted exactly at `target` (symlinks in `target` resolved).

    statx(2) says whether a path is the root of a mount, whatever the other mounts: reading
    the mount table instead took 5.7 ms of every create at 900 live containers. A kernel
    older than 5.8 does not say, and the mount table answers.
    """
    buffer = ctypes.create_string_buffer(_STATX_SIZE)
    if libc().statx(AT_FDCWD, os.fsencode(target), 0, 0, buffer) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise OSError(err, os.strerror(err), str(target))
    found = _Statx.from_buffer(buffer)
    if not found.attributes_mask & STATX_ATTR_MOUNT_ROOT:
        return os.path.realpath(target) in mount_points()
    return bool(found.attributes & STATX_ATTR_MOUNT_ROOT)


def mounts_under(*targets: Path, mountinfo: str = MOUNTINFO) -> list[str]:
    """Mount points at or below any of `targets`, deepest first (the order to unmount them
    in), from one read of the mount table.

    The table holds every container's mounts; it is searched for each target's path in C
    and only the lines holding it are parsed. Parsed whole, line by line in Python, it took
    over two thirds of the time cleanup threads held the interpreter lock while 1,000
    containers were destroyed (py-spy, 1,443 of 2,096 samples), time the loop waited.
    """
    with open(mountinfo, "rb") as f:
        table = f.read()
    found: set[str] = set()
    for target in targets:
        found.update(_points_at_or_below(table, os.path.realpath(target)))
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _points_at_or_below(table: bytes, top: str) -> Iterator[str]:
    """Mount points of mountinfo `table` at or below `top`: from the lines holding the path
    (escaped as the table escapes it) after a space, whichever field holds it."""
    below = top.rstrip("/") + "/"
    needle = b" " + _escape(top).encode("utf-8", "surrogateescape")
    at = table.find(needle)
    while at >= 0:
        start = table.rfind(b"\n", 0, at) + 1
        end = table.find(b"\n", at)
        end = len(table) if end < 0 else end
        point = _unescape(table[start:end].decode("utf-8", "surrogateescape").split(" ", 5)[4])
        if point == top or point.startswith(below):
            yield point
        at = table.find(needle, end)


def _escape(path: str) -> str:
    """A path as mountinfo writes it (see _unescape)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


# ------------------------------------------------------------ paths inside a container root

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


def set_fs_ids(uid: int, gid: int) -> bool:
    """Set this thread's file system gid, then uid; True if the kernel took both.

    setfs[ug]id answer with the previous id, so each is called twice: the second call's
    answer is what the first one set.
    """
    lib = libc()
    lib.setfsgid(gid)
    lib.setfsuid(uid)
    return lib.setfsuid(uid) == uid and lib.setfsgid(gid) == gid


def reset_fs_ids() -> None:
    """Back to file system ids 0:0, uid first: with fsuid 0 the thread's file capabilities
    are back before the gid changes."""
    lib = libc()
    lib.setfsuid(0)
    lib.setfsgid(0)


# --------------------------------------------------------------------- idmapped mounts

@functools.cache
def _clone() -> ctypes._CFuncPtr:
    fn = libc().clone
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


def _check(result: int, action: str, target: Path | str) -> int:
    if result < 0:
        raise MountError(ctypes.get_errno(), action, target)
    return result


def userns_fd(map_line: str) -> int:
    """An fd of a new user namespace whose uid and gid maps are `map_line` (close it).

    A child that shares our memory (CLONE_VM) is cloned straight into the new namespace and
    runs nothing but pause(2); its maps are written, its namespace opened, and it is killed
    (~0.2 ms; a fork of the server costs 4-6 ms).
    """
    stack = ctypes.create_string_buffer(_CHILD_STACK)
    top = ctypes.addressof(stack) + _CHILD_STACK - 64  # 16-byte aligned, below the end
    pause = ctypes.cast(libc().pause, ctypes.c_void_p).value
    pid = _clone()(pause, top, CLONE_NEWUSER | CLONE_VM | signal.SIGCHLD, None)
    if pid < 0:
        raise MountError(ctypes.get_errno(), "make a user namespace for", map_line.strip())
    try:
        for name in ("uid_map", "gid_map"):
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, map_line.encode())
            finally:
                os.close(fd)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def idmapped_tree(source: Path, userns: int) -> int:
    """A detached, read-only, nosuid, nodev clone of the mount at `source` whose ids are
    shifted by the maps of the user namespace `userns` (an fd; the tree's fd is returned)."""
    tree = _check(libc().syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(source),
                                 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), "clone the mount of", source)
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
                          | MOUNT_ATTR_NODEV, 0, 0, userns)
        _check(libc().syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH,
                              ctypes.byref(attr), ctypes.sizeof(attr)),
               "idmap the mount of", source)
    except BaseException:
        os.close(tree)
        raise
    return tree


def attach_tree(tree: int, target: Path) -> None:
    """move_mount(2) the detached tree `tree` onto `target`."""
    _check(libc().syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(target),
                          MOVE_MOUNT_F_EMPTY_PATH), "mount idmapped layer on", target)
