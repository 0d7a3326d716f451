"""A container's aufs layers: `upper/` (in the disk driver's volume when there is one, else in
the container dir), the mount point `rootfs/` and the `xino` path aufs keeps its table at (both
in the container dir), and the aufs mount that joins them to the lower rootfs. Making,
remounting and removing them is warden_rootfs_common.layers'; the mount's option data is
branches.py's; what is written into the container's tree belongs to etcfiles and copying.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from warden_aufs import branches, kernel
from warden_rootfs_common import layers as shared
from warden_rootfs_common.layers import RootfsNotFound, check_rootfs

__all__ = ["FsPaths", "RootfsNotFound", "check_rootfs", "create_layers", "fs_paths",
           "remove_layers"]

XINO = "xino"


@dataclass(frozen=True)
class FsPaths(shared.FsPaths):
    """The shared layer paths plus `xino`, a file aufs makes itself: kept out of upper, so the
    table never counts as the container's use (and off any quota volume)."""

    xino: Path

    def to_remove(self) -> tuple[Path, ...]:
        return (self.rootfs, self.upper, self.xino)


def fs_paths(container_dir: Path, layer_dir: Path | None = None) -> FsPaths:
    """The layer paths of `container_dir` (no I/O); upper/ in `layer_dir` if given."""
    upper, rootfs = shared.layer_paths(container_dir, layer_dir)
    return FsPaths(upper=upper, rootfs=rootfs, xino=Path(container_dir) / XINO)


NO_IDMAP = ("aufs cannot show the rootfs idmapped to a user namespace "
            "(set user.namespaces: false, or use rootfs: overlayfs)")


def create_layers(container_dir: Path, lower: Path | str, layer_dir: Path | None = None,
                  id_map: object | None = None) -> FsPaths:
    """Make upper/rootfs and mount the aufs union on rootfs (see shared.create_layers).

    aufs cannot take an idmapped branch, so a container with a user namespace is refused
    here as well as at start-up (AufsDriver.check_host)."""
    if id_map is not None:
        raise ValueError(NO_IDMAP)
    return shared.create_layers(fs_paths(container_dir, layer_dir), lower, _mount, kernel,
                                branches.FSTYPE)


def _mount(lower: Path, paths: FsPaths) -> None:
    request = branches.union_mount(paths.upper, lower, paths.xino, paths.rootfs)
    shared.remove_tree(paths.xino)  # aufs creates it O_EXCL: a stale one would fail the mount
    kernel.mount(request.source, request.target, request.fstype, request.flags, request.data)


def remove_layers(container_dir: Path, layer_dir: Path | None = None) -> None:
    """Unmount everything at or below rootfs/upper, then delete them and any xino left
    (idempotent)."""
    shared.remove_layers(fs_paths(container_dir, layer_dir), kernel)
