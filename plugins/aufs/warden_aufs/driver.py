"""The aufs rootfs driver: an aufs union of the container's `upper` (read-write) over the
read-only rootfs, mounted on `<container>/rootfs` (warden-facts §10.7): the same layout and
behaviour as the overlayfs driver. Its hooks are warden_rootfs_common.union's; this class names
the filesystem check, layers.py (where the layers are, the branch mount) and kernel.py (the
seam its tests replace with a recording fake).
"""

from __future__ import annotations

from pathlib import Path

from warden_framework.errors import DriverUnavailable
from warden_rootfs_common.layers import FsPaths
from warden_rootfs_common.kernel import PROC_FILESYSTEMS
from warden_rootfs_common.union import UnionRootfsDriver

from . import branches, kernel, layers

NO_AUFS = "the kernel has no aufs filesystem (not in mainline Linux; use rootfs: overlayfs)"


class AufsDriver(UnionRootfsDriver):
    """The rootfs driver `aufs`. Its hooks, all inherited from
    warden_rootfs_common.union.UnionRootfsDriver (the same for every union filesystem):

    - setup_host: user namespaces of the uid pool made ahead (unused: aufs refuses them);
    - setup_fs, teardown_fs, recover: the layers (layers.py) and the aufs mount (branches.py,
      kernel.py), made, removed, and mounted again after a reboot;
    - copy_in, copy_out: files in and out of the container's root (rootfs_common.copying);
    - info: disk use of the upper layer when no disk driver reports it.

    This class adds its name, its /proc/filesystems check, the refusal of user namespaces,
    the upper dir in setup_fs's record, layers.py and kernel.py.
    """

    name = "aufs"
    layers = layers
    kernel = kernel
    path_errors = (branches.BranchPathError,)

    @classmethod
    def check_filesystem(cls, proc_filesystems: Path) -> None:
        try:
            present = kernel.has_filesystem(branches.FSTYPE, proc_filesystems)
        except OSError as exc:
            raise DriverUnavailable(f"cannot read {proc_filesystems}: {exc.strerror}") from None
        if not present:
            raise DriverUnavailable(NO_AUFS)

    @classmethod
    def check_host(cls, settings, proc_filesystems: Path = PROC_FILESYSTEMS) -> None:
        super().check_host(settings, proc_filesystems)
        if settings.user.namespaces:
            raise DriverUnavailable(f"aufs: {layers.NO_IDMAP}")

    def fs_record(self, lower: Path, paths: FsPaths) -> dict:
        return {**super().fs_record(lower, paths), "upper": str(paths.upper)}
