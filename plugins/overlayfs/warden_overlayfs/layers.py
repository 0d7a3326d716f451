"""A container's overlay layers: `upper/` and `work/` (in the disk driver's volume when there is
one, else in the container dir) and the mount point `rootfs/`, and the overlay mount that joins
them to the lower rootfs. Making, remounting and removing them is warden_rootfs_common.layers';
what is written into the container's tree belongs to etcfiles and copying there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from warden_overlayfs import kernel
from warden_rootfs_common import layers as shared
from warden_rootfs_common.layers import RootfsNotFound, check_rootfs

__all__ = ["FSTYPE", "FsPaths", "RootfsNotFound", "check_rootfs", "create_layers", "fs_paths",
           "remove_layers"]

FSTYPE = "overlay"
WORK = "work"


@dataclass(frozen=True)
class FsPaths(shared.FsPaths):
    """The shared layer paths plus overlay's `work` dir, beside upper (overlay needs both on
    one filesystem, and an empty work dir it owns)."""

    work: Path

    def to_make(self) -> tuple[tuple[Path, int], ...]:
        return ((self.upper, 0o755), (self.work, 0o700), (self.rootfs, 0o755))

    def to_remove(self) -> tuple[Path, ...]:
        return (self.rootfs, self.upper, self.work)


def fs_paths(container_dir: Path, layer_dir: Path | None = None) -> FsPaths:
    """The layer paths of `container_dir` (no I/O); upper/ and work/ in `layer_dir` if given."""
    upper, rootfs = shared.layer_paths(container_dir, layer_dir)
    return FsPaths(upper=upper, rootfs=rootfs, work=upper.parent / WORK)


def create_layers(container_dir: Path, lower: Path | str,
                  layer_dir: Path | None = None) -> FsPaths:
    """Make upper/work/rootfs and mount the overlay on rootfs (see shared.create_layers)."""
    return shared.create_layers(fs_paths(container_dir, layer_dir), lower, _mount, kernel,
                                FSTYPE)


def _mount(lower: Path, paths: FsPaths) -> None:
    kernel.mount_overlay(lower, paths.upper, paths.work, paths.rootfs)


def remove_layers(container_dir: Path, layer_dir: Path | None = None) -> None:
    """Unmount everything at or below rootfs/upper/work, then delete them (idempotent)."""
    shared.remove_layers(fs_paths(container_dir, layer_dir), kernel)
