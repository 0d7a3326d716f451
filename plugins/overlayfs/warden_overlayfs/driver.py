"""The overlayfs rootfs driver: an overlay of the read-only rootfs (lower) and the container's
`upper`, mounted on `<container>/rootfs`. Its hooks are warden_rootfs_common.union's; this
class names the filesystem check, layers.py (where the layers are, the overlay mount) and
kernel.py (the seam its tests replace).
"""

from __future__ import annotations

from pathlib import Path

from warden_framework.errors import DriverUnavailable
from warden_rootfs_common.union import UnionRootfsDriver

from . import kernel, layers

NO_OVERLAY = "the kernel has no overlay filesystem (modprobe overlay)"


class OverlayfsDriver(UnionRootfsDriver):
    """The rootfs driver `overlayfs`. Its hooks, all inherited from
    warden_rootfs_common.union.UnionRootfsDriver (the same for every union filesystem):

    - setup_host: user namespaces of the uid pool made ahead, for idmapped lower layers;
    - setup_fs, teardown_fs, recover: the layers (layers.py) and the overlay mount
      (kernel.py), made, removed, and mounted again after a reboot;
    - copy_in, copy_out: files in and out of the container's root (rootfs_common.copying);
    - info: disk use of the upper layer when no disk driver reports it.

    This class adds only its name, its /proc/filesystems check, layers.py and kernel.py.
    """

    name = "overlayfs"
    layers = layers
    kernel = kernel

    @classmethod
    def check_filesystem(cls, proc_filesystems: Path) -> None:
        if not kernel.has_filesystem(layers.FSTYPE, proc_filesystems):
            raise DriverUnavailable(NO_OVERLAY)
