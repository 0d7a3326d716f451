"""A container's union layers, whatever the union filesystem: the check of the lower rootfs,
making the layer dirs and mounting them, and unmounting and deleting them again.

Each driver's own layers.py says where its layers are (an FsPaths subclass) and hands in its
mount call and its kernel.py (the seam its tests replace); the mount option data is its own.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from warden_framework.idmap import IdMap
from warden_rootfs_common.kernel import MountError

log = logging.getLogger(__name__)

UPPER = "upper"
ROOTFS = "rootfs"

_UNMOUNT_ROUNDS = 8  # stacked mounts need one round each; more means something keeps mounting


class RootfsNotFound(ValueError):
    """The requested lower rootfs is not an existing directory; text is the client's error."""


class MountSeam(Protocol):
    """What of a driver's kernel.py this module calls (a module satisfies it)."""

    def is_mounted(self, target: Path) -> bool: ...

    def mounts_under(self, target: Path) -> list[str]: ...

    def unmount(self, target: Path) -> None: ...


@dataclass(frozen=True)
class FsPaths:
    """Where a container's layers live: `upper` is the writable layer, `rootfs` the mount
    point and the container's "/" once mounted. A driver subclasses it for its extra paths."""

    upper: Path
    rootfs: Path

    def to_make(self) -> tuple[tuple[Path, int], ...]:
        """The directories create_layers makes when missing, in order, with their modes."""
        return ((self.upper, 0o755), (self.rootfs, 0o755))

    def to_remove(self) -> tuple[Path, ...]:
        """What remove_layers unmounts everything below and then deletes, in order."""
        return (self.rootfs, self.upper)


P = TypeVar("P", bound=FsPaths)


def layer_paths(container_dir: Path, layer_dir: Path | None = None) -> tuple[Path, Path]:
    """(upper, rootfs) of `container_dir` (no I/O). upper/ lives in `layer_dir` when given: a
    volume a quota driver made for this container (a btrfs subvolume)."""
    c = Path(container_dir)
    return Path(layer_dir or c) / UPPER, c / ROOTFS


def check_rootfs(path: Path | str) -> Path:
    """`path` resolved (symlinks followed) if it is an existing directory, else RootfsNotFound."""
    if not os.path.isdir(path):
        raise RootfsNotFound(f"rootfs {path} not found")
    return Path(path).resolve()


def create_layers(paths: P, lower: Path | str, mount: Callable[[Path, P], None],
                  kernel: MountSeam, fstype: str, id_map: IdMap | None = None) -> P:
    """Make the dirs of `paths` and `mount(lower_dir, paths)` the union on paths.rootfs.

    A new upper dir takes the lower root's mode and owner (shifted into `id_map`'s range for
    a container with a user namespace), since the union's "/" shows the upper's. Existing dirs are reused, so this also remounts a container whose mount is gone
    (after a reboot). On failure the dirs made here are removed; reused ones stay. A rootfs
    already mounted is refused as `mount <fstype> on <rootfs>: Device or resource busy`.
    """
    lower_dir = check_rootfs(lower)
    if kernel.is_mounted(paths.rootfs):
        raise MountError(errno.EBUSY, f"mount {fstype} on", paths.rootfs)
    made: list[Path] = []
    try:
        _make_dirs(paths, lower_dir, made, id_map)
        mount(lower_dir, paths)
    except BaseException:
        _undo_create(made, fstype)
        raise
    return paths


def _make_dirs(paths: FsPaths, lower: Path, made: list[Path], id_map: IdMap | None) -> None:
    st = lower.stat()
    for path, mode in paths.to_make():
        if path.is_dir():
            continue
        path.mkdir(mode=mode, parents=True)
        made.append(path)
        if path == paths.upper:
            if id_map is None:
                os.chown(path, st.st_uid, st.st_gid)
            else:
                os.chown(path, id_map.to_host(st.st_uid), id_map.to_host(st.st_gid))
            os.chmod(path, st.st_mode & 0o7777)


def _undo_create(made: list[Path], fstype: str) -> None:
    for path in reversed(made):
        try:
            remove_tree(path)
        except Exception:  # rollback: the create error is the one the caller must see
            log.exception("%s: removing %s after a failed create", fstype, path)


def remove_layers(paths: FsPaths, kernel: MountSeam) -> None:
    """Unmount everything at or below paths.to_remove(), then delete them.

    Idempotent and safe on a half-created container dir; leaves the container dir itself.
    Nothing is deleted while anything is still mounted below it.
    """
    owned = paths.to_remove()
    for _ in range(_UNMOUNT_ROUNDS):
        points = kernel.mounts_under(*owned)  # one read of the mount table a round
        if not points:
            break
        for point in points:
            kernel.unmount(Path(point))
    else:
        raise MountError(errno.EBUSY, "unmount", paths.rootfs)
    for path in owned:
        remove_tree(path)


def remove_tree(path: Path) -> None:
    """Delete `path`: a directory with all in it, anything else (a symlink too) itself."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # fd-based on Linux: never follows symlinks out of the tree
    else:
        path.unlink()
