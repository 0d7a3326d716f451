"""Idmapped mounts: a read-only layer shown to a container's user namespace as root-owned.

A container's ids 0..N are host ids B..B+N (warden_framework.idmap). Its lower rootfs is
owned by host ids 0..N, which its user namespace cannot map, so the layer is mounted
idmapped: a clone of the lower tree, its ids shifted by the range, attached at
`<container>/lower`, and the union takes that as its lower dir. Which path is mounted where
is the layers module's; the system calls are kernel.py's (open_tree, mount_setattr,
move_mount, and the clone(2) that makes a user namespace).

The idmapping is read from a user namespace with the container's map. Making one costs
~0.15 ms, so they are kept per map (UsernsCache) and made ahead at start-up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from warden_framework.idmap import IdMap
from warden_rootfs_common import kernel
from warden_rootfs_common.kernel import MountError

# The map of check_support's probe: far above any pool, one range wide.
_PROBE_MAP = IdMap(1 << 30, 65536)


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
    return kernel.userns_fd(id_map.map_line())


def mount_idmapped(source: Path, target: Path, id_map: IdMap) -> None:
    """Mount `source` on `target` read-only with its ids shifted into `id_map`'s range."""
    tree = kernel.idmapped_tree(source, USERNS.fd(id_map))
    try:
        kernel.attach_tree(tree, target)
    finally:
        os.close(tree)


def check_support(source: Path) -> None:
    """Raise MountError unless the kernel can idmap a mount of `source` (nothing is left)."""
    os.close(kernel.idmapped_tree(source, USERNS.fd(_PROBE_MAP)))


__all__ = ["USERNS", "UsernsCache", "check_support", "mount_idmapped", "userns_fd"]
