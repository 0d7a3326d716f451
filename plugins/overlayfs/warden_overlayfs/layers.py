"""A container's overlay layers: `upper/`, `work/` and the mount point `rootfs/` inside its
container dir, the overlay mount that joins them to the lower rootfs, and their removal.
What is written into the container's tree belongs to etcfiles.py and copying.py.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from warden_overlayfs import kernel

log = logging.getLogger(__name__)

UPPER = "upper"
WORK = "work"
ROOTFS = "rootfs"

_UNMOUNT_ROUNDS = 8  # stacked mounts need one round each; more means something keeps mounting


class RootfsNotFound(ValueError):
    """The requested lower rootfs is not an existing directory; text is the client's error."""


@dataclass(frozen=True)
class FsPaths:
    """Where a container's layers live; `rootfs` is the container's "/" once mounted."""

    upper: Path
    work: Path
    rootfs: Path


def fs_paths(container_dir: Path, layer_dir: Path | None = None) -> FsPaths:
    """The layer paths of `container_dir` (no I/O). upper/ and work/ live in `layer_dir` when
    given: a volume a quota driver made for this container (a btrfs subvolume)."""
    c = Path(container_dir)
    layers = Path(layer_dir) if layer_dir else c
    return FsPaths(upper=layers / UPPER, work=layers / WORK, rootfs=c / ROOTFS)


def check_rootfs(path: Path | str) -> Path:
    """`path` resolved (symlinks followed) if it is an existing directory, else RootfsNotFound."""
    if not os.path.isdir(path):
        raise RootfsNotFound(f"rootfs {path} not found")
    return Path(path).resolve()


def create_layers(container_dir: Path, lower: Path | str, layer_dir: Path | None = None) -> FsPaths:
    """Make upper/work/rootfs under `container_dir` and mount the overlay on rootfs.

    A new upper dir takes the lower root's mode and owner, since the merged "/" shows the
    upper's. Existing dirs are reused, so this also remounts a container whose mount is
    gone (after a reboot). On failure the dirs made here are removed; reused ones stay.
    """
    lower_dir = check_rootfs(lower)
    paths = fs_paths(container_dir, layer_dir)
    if kernel.is_mounted(paths.rootfs):
        raise kernel.MountError(errno.EBUSY, "mount overlay on", paths.rootfs)
    made: list[Path] = []
    try:
        _make_dirs(paths, lower_dir, made)
        kernel.mount_overlay(lower_dir, paths.upper, paths.work, paths.rootfs)
    except BaseException:
        _undo_create(made)
        raise
    return paths


def _make_dirs(paths: FsPaths, lower: Path, made: list[Path]) -> None:
    st = lower.stat()
    for path, mode in ((paths.upper, 0o755), (paths.work, 0o700), (paths.rootfs, 0o755)):
        if path.is_dir():
            continue
        path.mkdir(mode=mode, parents=True)
        made.append(path)
        if path == paths.upper:
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, st.st_mode & 0o7777)


def _undo_create(made: list[Path]) -> None:
    for path in reversed(made):
        try:
            _remove_tree(path)
        except Exception:  # rollback: the create error is the one the caller must see
            log.exception("overlayfs: removing %s after a failed create", path)


def remove_layers(container_dir: Path, layer_dir: Path | None = None) -> None:
    """Unmount everything at or below the layer dirs, then delete them.

    Idempotent and safe on a half-created container dir; leaves `container_dir` itself.
    Nothing is deleted while anything is still mounted below it.
    """
    paths = fs_paths(container_dir, layer_dir)
    dirs = (paths.rootfs, paths.upper, paths.work)
    for _ in range(_UNMOUNT_ROUNDS):
        points = [p for d in dirs for p in kernel.mounts_under(d)]
        if not points:
            break
        for point in points:
            kernel.unmount(Path(point))
    else:
        raise kernel.MountError(errno.EBUSY, "unmount", paths.rootfs)
    for d in dirs:
        _remove_tree(d)


def _remove_tree(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)  # fd-based on Linux: never follows symlinks out of the tree
