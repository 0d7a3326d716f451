"""A container's overlay layers: `upper/` and `work/` (in the disk driver's volume when there is
one, else in the container dir) and the mount point `rootfs/`, and the overlay mount that joins
them to the lower rootfs. Making, remounting and removing them is warden_rootfs_common.layers';
what is written into the container's tree belongs to etcfiles and copying there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from warden_framework.idmap import IdMap
from warden_overlayfs import kernel
from warden_rootfs_common import layers as shared
from warden_rootfs_common.layers import RootfsNotFound, check_rootfs

__all__ = ["FSTYPE", "FsPaths", "RootfsNotFound", "check_rootfs", "create_layers", "fs_paths",
           "remove_layers"]

FSTYPE = "overlay"
WORK = "work"
LOWER = "lower"


@dataclass(frozen=True)
class FsPaths(shared.FsPaths):
    """The shared layer paths plus overlay's `work` dir, beside upper (overlay needs both on
    one filesystem, and an empty work dir it owns), and `lower`, where the lower rootfs is
    mounted idmapped for a container with a user namespace (idmapped.py)."""

    work: Path
    lower: Path

    def to_make(self) -> tuple[tuple[Path, int], ...]:
        return ((self.upper, 0o755), (self.work, 0o700), (self.lower, 0o755), (self.rootfs, 0o755))

    def to_remove(self) -> tuple[Path, ...]:
        return (self.rootfs, self.lower, self.upper, self.work)


def fs_paths(container_dir: Path, layer_dir: Path | None = None) -> FsPaths:
    """The layer paths of `container_dir` (no I/O); upper/ and work/ in `layer_dir` if given."""
    upper, rootfs = shared.layer_paths(container_dir, layer_dir)
    return FsPaths(upper=upper, rootfs=rootfs, work=upper.parent / WORK,
                   lower=Path(container_dir) / LOWER)


def create_layers(container_dir: Path, lower: Path | str, layer_dir: Path | None = None,
                  id_map: IdMap | None = None) -> FsPaths:
    """Make upper/work/lower/rootfs and mount the overlay on rootfs (see
    shared.create_layers); with `id_map`, over the lower rootfs idmapped into its range."""
    def mount(lower_dir: Path, paths: FsPaths) -> None:
        if id_map is None:
            kernel.mount_overlay(lower_dir, paths.upper, paths.work, paths.rootfs)
            return
        kernel.mount_idmapped(lower_dir, paths.lower, id_map)
        try:
            kernel.mount_overlay(paths.lower, paths.upper, paths.work, paths.rootfs)
        except BaseException:
            kernel.unmount(paths.lower)  # before the rollback deletes the made dirs
            raise

    return shared.create_layers(fs_paths(container_dir, layer_dir), lower, mount, kernel,
                                FSTYPE, id_map)


def remove_layers(container_dir: Path, layer_dir: Path | None = None) -> None:
    """Unmount everything at or below rootfs/upper/work, then delete them (idempotent)."""
    shared.remove_layers(fs_paths(container_dir, layer_dir), kernel)
