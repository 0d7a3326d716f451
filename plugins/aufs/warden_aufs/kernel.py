"""The aufs plugin's kernel seam: mount(2) here, and unmount, the mount table and what
/proc/filesystems lists re-exported from warden_rootfs_common.kernel, so that layers.py
and the hooks AufsDriver inherits call, and unit tests replace with a recording fake, this one
module. openat2 and file system ids (copying, /etc files) are warden_rootfs_common.kernel's
own business.

No `mount` process is ever run (so no mount.aufs/auplink helper either).
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from warden_rootfs_common.kernel import (PROC_FILESYSTEMS, MountError, has_filesystem,
                                         is_mounted, libc, mounts_under, unmount)

__all__ = ["PROC_FILESYSTEMS", "MountError", "has_filesystem", "is_mounted", "mount",
           "mounts_under", "unmount"]


def mount(source: str, target: Path, fstype: str, flags: int, data: bytes) -> None:
    """mount(2) `source` of type `fstype` on `target` with `flags` and option `data`."""
    if libc().mount(os.fsencode(source), os.fsencode(target), fstype.encode(), flags,
                    data) != 0:
        err = ctypes.get_errno()
        hint = f"the kernel has no {fstype} filesystem" if err == errno.ENODEV else ""
        raise MountError(err, f"mount {fstype} on", target, hint)
