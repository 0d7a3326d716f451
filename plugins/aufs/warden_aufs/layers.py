"""A container's aufs layers: `upper/` and the mount point `rootfs/` inside its container dir
(plus the `xino` path aufs uses for its table), the aufs mount that joins them to the lower
rootfs, and their removal. What is written into the container's tree belongs to etcfiles.py
and copying.py; the mount's option data to branches.py.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from warden_aufs import branches, kernel

log = logging.getLogger(__name__)

UPPER = "upper"
ROOTFS = "rootfs"
XINO = "xino"

_UNMOUNT_ROUNDS = 8  # stacked mounts need one round each; more means something keeps mounting


class RootfsNotFound(ValueError):
    """The requested lower rootfs is not an existing directory; text is the client's error."""


@dataclass(frozen=True)
class FsPaths:
    """Where a container's layers live; `rootfs` is the container's "/" once mounted."""

    upper: Path
    rootfs: Path
    xino: Path


def fs_paths(container_dir: Path) -> FsPaths:
    """The layer paths of `container_dir` (derived from the directory alone, no I/O)."""
    c = Path(container_dir)
    return FsPaths(upper=c / UPPER, rootfs=c / ROOTFS, xino=c / XINO)


def check_rootfs(path: Path | str) -> Path:
    """`path` resolved (symlinks followed) if it is an existing directory, else RootfsNotFound."""
    if not os.path.isdir(path):
        raise RootfsNotFound(f"rootfs {path} not found")
    return Path(path).resolve()


def create_layers(container_dir: Path, lower: Path | str) -> FsPaths:
    """Make upper/rootfs under `container_dir` and mount the aufs union on rootfs.

    A new upper dir takes the lower root's mode and owner, since the union's "/" shows the
    upper's. Existing dirs are reused, so this also remounts a container whose mount is gone
    (after a reboot). On failure the dirs made here are removed; reused ones stay.
    """
    lower_dir = check_rootfs(lower)
    paths = fs_paths(container_dir)
    request = branches.union_mount(paths.upper, lower_dir, paths.xino, paths.rootfs)
    if kernel.is_mounted(paths.rootfs):
        raise kernel.MountError(errno.EBUSY, f"mount {request.fstype} on", paths.rootfs)
    made: list[Path] = []
    try:
        _make_dirs(paths, lower_dir, made)
        _remove_tree(paths.xino)  # aufs creates it O_EXCL: a stale one would fail the mount
        kernel.mount(request.source, request.target, request.fstype, request.flags,
                     request.data)
    except BaseException:
        _undo_create(made)
        raise
    return paths


def _make_dirs(paths: FsPaths, lower: Path, made: list[Path]) -> None:
    st = lower.stat()
    for path in (paths.upper, paths.rootfs):
        if path.is_dir():
            continue
        path.mkdir(mode=0o755, parents=True)
        made.append(path)
        if path == paths.upper:
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, st.st_mode & 0o7777)


def _undo_create(made: list[Path]) -> None:
    for path in reversed(made):
        try:
            _remove_tree(path)
        except Exception:  # rollback: the create error is the one the caller must see
            log.exception("aufs: removing %s after a failed create", path)


def remove_layers(container_dir: Path) -> None:
    """Unmount everything at or below the layer dirs, then delete them (and any xino left).

    Idempotent and safe on a half-created container dir; leaves `container_dir` itself.
    Nothing is deleted while anything is still mounted below it.
    """
    paths = fs_paths(container_dir)
    dirs = (paths.rootfs, paths.upper)
    for _ in range(_UNMOUNT_ROUNDS):
        points = [p for d in dirs for p in kernel.mounts_under(d)]
        if not points:
            break
        for point in points:
            kernel.unmount(Path(point))
    else:
        raise kernel.MountError(errno.EBUSY, "unmount", paths.rootfs)
    for path in (*dirs, paths.xino):
        _remove_tree(path)


def _remove_tree(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # fd-based on Linux: never follows symlinks out of the tree
    else:
        path.unlink()
