"""Idmapped mounts: a read-only layer shown to a container's user namespace as root-owned.

A container's ids 0..N are host ids B..B+N (warden_framework.idmap). Its lower rootfs is
owned by host ids 0..N, which its user namespace cannot map, so the layer is mounted
idmapped: a clone of the lower tree (open_tree), its ids shifted by the range
(mount_setattr MOUNT_ATTR_IDMAP), attached at `<container>/lower` (move_mount), and the union
takes that as its lower dir. Only the kernel calls are here; which path is mounted where is
the layers module's.

The idmapping is read from a user namespace. One with the container's map is made for the
call and dropped at once: a child process that shares our memory (CLONE_VM) is cloned
straight into a new user namespace, runs nothing but pause(2), gets its maps written,
yields /proc/<pid>/ns/user and is killed (~0.2 ms; a fork of the server costs 4-6 ms).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import threading
from collections.abc import Iterable
from pathlib import Path

from warden_framework.idmap import IdMap
from warden_rootfs_common.mounts import MountError, libc

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x100000
CLONE_VM = 0x100
CLONE_NEWUSER = 0x10000000
_CHILD_STACK = 16384


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


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


class UsernsCache:
    """User namespaces kept per id map, so that a create finds its range's ready: the pool
    hands ranges out first-in first-out, so without a warm-up each create would make its own
    (~0.15 ms). One descriptor per range of the uid pool; past `limit` (raised to the number
    of ranges warmed) the oldest are closed."""

    def __init__(self, limit: int = 512) -> None:
        self._fds: dict[IdMap, int] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def fd(self, id_map: IdMap) -> int:
        """A descriptor of a user namespace with `id_map` (the cache's: do not close it)."""
        with self._lock:
            fd = self._fds.get(id_map)
        if fd is None:
            fd = self._keep(id_map, userns_fd(id_map))
        return fd

    def warm(self, id_maps: Iterable[IdMap]) -> threading.Thread:
        """Make the namespaces of `id_maps` on a thread of their own (started, returned)."""
        id_maps = list(id_maps)
        with self._lock:
            self._limit = max(self._limit, len(id_maps))

        def run() -> None:
            for id_map in id_maps:
                with self._lock:
                    if id_map in self._fds:
                        continue
                try:
                    self._keep(id_map, userns_fd(id_map))
                except MountError:
                    return  # the create that needs it makes its own, and reports the error
        thread = threading.Thread(target=run, name="userns-warm-up", daemon=True)
        thread.start()
        return thread

    def clear(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)

    def _keep(self, id_map: IdMap, fd: int) -> int:
        with self._lock:
            kept = self._fds.setdefault(id_map, fd)
            while len(self._fds) > self._limit:
                os.close(self._fds.pop(next(iter(self._fds))))
        if kept != fd:
            os.close(fd)  # another thread made it first
        return kept


USERNS = UsernsCache()


def userns_fd(id_map: IdMap) -> int:
    """An fd of a new user namespace whose uid and gid maps are `id_map`'s (close it)."""
    stack = ctypes.create_string_buffer(_CHILD_STACK)
    top = ctypes.addressof(stack) + _CHILD_STACK - 64  # 16-byte aligned, below the end
    pause = ctypes.cast(libc().pause, ctypes.c_void_p).value
    pid = _clone()(pause, top, CLONE_NEWUSER | CLONE_VM | signal.SIGCHLD, None)
    if pid < 0:
        raise MountError(ctypes.get_errno(), "make a user namespace for", id_map.map_line().strip())
    try:
        for name in ("uid_map", "gid_map"):
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, id_map.map_line().encode())
            finally:
                os.close(fd)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _idmapped_tree(source: Path, id_map: IdMap) -> int:
    """A detached, read-only, nosuid, nodev clone of `source` with `id_map` applied (an fd)."""
    tree = _check(libc().syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(source),
                                 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), "clone the mount of", source)
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
                          | MOUNT_ATTR_NODEV, 0, 0, USERNS.fd(id_map))
        _check(libc().syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH,
                              ctypes.byref(attr), ctypes.sizeof(attr)),
               "idmap the mount of", source)
    except BaseException:
        os.close(tree)
        raise
    return tree


def mount_idmapped(source: Path, target: Path, id_map: IdMap) -> None:
    """Mount `source` on `target` read-only with its ids shifted into `id_map`'s range."""
    tree = _idmapped_tree(source, id_map)
    try:
        _check(libc().syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(target),
                              MOVE_MOUNT_F_EMPTY_PATH), "mount idmapped layer on", target)
    finally:
        os.close(tree)


def check_support(source: Path) -> None:
    """Raise MountError unless the kernel can idmap a mount of `source` (nothing is left)."""
    os.close(_idmapped_tree(source, IdMap(1 << 30, 65536)))


__all__ = ["USERNS", "UsernsCache", "check_support", "mount_idmapped", "userns_fd"]
