"""The overlayfs plugin's kernel seam: the overlay mount(2) here, and unmount, the mount table,
what /proc/filesystems lists and the idmapped mount of the lower layer re-exported from
warden_rootfs_common (its kernel.py and idmapped.py), so that layers.py and the hooks
OverlayfsDriver inherits call, and tests replace, this one module. openat2 and file system
ids (copying, /etc files) are warden_rootfs_common.kernel's own business.

No `mount` process is ever run.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from warden_rootfs_common.idmapped import mount_idmapped
from warden_rootfs_common.kernel import (MountError, has_filesystem, is_mounted, libc,
                                         mounts_under, unmount)

__all__ = ["MountError", "has_filesystem", "is_mounted", "mount_idmapped", "mount_overlay",
           "mounts_under", "unmount"]

MS_NOSUID = 0x2
MS_NODEV = 0x4
# Characters overlayfs treats as separators in mount(2) option data.
_OPTION_SPECIALS = frozenset(",:\\")


def _option_path(path: Path, target: Path) -> bytes:
    text = os.fsencode(path)
    if _OPTION_SPECIALS.intersection(os.fsdecode(text)):
        raise MountError(errno.EINVAL, "mount overlay on", target,
                         f"path {path} contains one of , : \\")
    return text


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay of `lower` (read-only) and `upper` (writable) on `target`, nosuid and
    nodev: a set-uid file or a device node that container root made is inert on the host.

    All four paths must be absolute, existing directories; `work` must be empty and on the
    same filesystem as `upper`.
    """
    data = b"lowerdir=%s,upperdir=%s,workdir=%s" % (
        _option_path(lower, target), _option_path(upper, target), _option_path(work, target))
    if libc().mount(b"overlay", os.fsencode(target), b"overlay", MS_NOSUID | MS_NODEV, data) != 0:
        err = ctypes.get_errno()
        hint = "modprobe overlay" if err == errno.ENODEV else ""
        raise MountError(err, "mount overlay on", target, hint)
