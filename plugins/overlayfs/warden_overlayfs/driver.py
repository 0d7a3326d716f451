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
    name = "overlayfs"
    layers = layers
    kernel = kernel

    @classmethod
    def check_filesystem(cls, proc_filesystems: Path) -> None:
        with open(proc_filesystems) as f:
            if "\toverlay\n" not in f.read():
                raise DriverUnavailable(NO_OVERLAY)
