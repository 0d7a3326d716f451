"""The aufs plugin's kernel seam: mount(2) and what /proc says about filesystems here, and
unmount and the mount table re-exported from warden_rootfs_common.mounts, so that layers.py and
the driver's inherited hooks call, and unit tests replace with a recording fake, this one
module. openat2 (copying, /etc files) is warden_rootfs_common's own business.

No `mount` process is ever run (so no mount.aufs/auplink helper either).
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from warden_rootfs_common.mounts import (PROC_FILESYSTEMS, MountError, is_mounted, libc,
                                         mounts_under, unmount)

__all__ = ["PROC_FILESYSTEMS", "MountError", "has_filesystem", "is_mounted", "mount",
           "mounts_under", "unmount"]


def has_filesystem(name: str, proc_filesystems: Path = PROC_FILESYSTEMS) -> bool:
    """Whether the kernel lists filesystem type `name` (lines `[nodev]\\t<name>`)."""
    text = Path(proc_filesystems).read_text(encoding="ascii", errors="replace")
    return any(line.split()[-1:] == [name] for line in text.splitlines())


def mount(source: str, target: Path, fstype: str, flags: int, data: bytes) -> None:
    """mount(2) `source` of type `fstype` on `target` with `flags` and option `data`."""
    if libc().mount(os.fsencode(source), os.fsencode(target), fstype.encode(), flags,
                    data) != 0:
        err = ctypes.get_errno()
        hint = f"the kernel has no {fstype} filesystem" if err == errno.ENODEV else ""
        raise MountError(err, f"mount {fstype} on", target, hint)
