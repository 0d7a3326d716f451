"""vfs user quotas on the filesystem holding the depot (Warden's design, facts §5.8, §10.1):
which mount that is, whether the kernel and the mount can enforce quotas, the setquota
command line, and limits and usage read back. Kernel access goes through `kernel`."""

from __future__ import annotations

import errno
from pathlib import Path

from warden_framework.errors import DriverError, WardenError

from . import kernel
from .limits import QuotaLimits
from .mounts import Mount, existing_ancestor, mount_of, parse_mountinfo

# Functions of the quota_v2 module (vfsv0/vfsv1 formats): in /proc/kallsyms once it is loaded.
V2_SYMBOLS = ("v2_read_file_info", "v2_check_quota_file")
V2_MODULE = "quota_v2"


def depot_mount(depot: str | Path) -> Mount:
    """The mount holding the depot (or the nearest existing parent of a depot not made yet)."""
    return mount_of(existing_ancestor(depot), parse_mountinfo(kernel.read_mountinfo()))


def quotas_on(mount_point: str) -> bool:
    """True if user quotas are on for the filesystem; OSError when it cannot have any."""
    try:
        kernel.quota_format(mount_point)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    return True


def format_available() -> bool:
    """The vfsv0/vfsv1 quota format is built in, loaded, or loadable as quota_v2."""
    return kernel.kernel_has_symbol(V2_SYMBOLS) or kernel.module_available(V2_MODULE)


def host_problems(depot: str | Path) -> list[str]:
    """What stops user quotas on the depot's filesystem, each with its fix; [] when none."""
    mount = depot_mount(depot)
    where = f"{mount.fstype} {mount.source} at {mount.mount_point}"
    problems = []
    try:
        on = quotas_on(mount.mount_point)
    except OSError as exc:
        on = False
        problems.append(f"{where} does not support quotactl ({exc.strerror})")
    if not on and not format_available():
        problems.insert(0, f"kernel {kernel.kernel_release()} has no vfsv0/vfsv1 quota format "
                           f"(needs CONFIG_QFMT_V2, module {V2_MODULE})")
    if not mount.has_user_quota:
        mp = mount.mount_point
        problems.append(f"{where} is not mounted with usrquota or usrjquota (mount -o "
                        f"remount,usrquota {mp}; quotacheck -cum {mp}; quotaon -u {mp})")
    return problems


def turn_on(mount_point: str) -> None:
    """quotaon -u when user quotas are off (a remount lost them); Warden's setup.sh does too."""
    if quotas_on(mount_point):
        return
    try:
        kernel.run(["quotaon", "-u", mount_point])
    except kernel.CommandFailed as exc:
        raise DriverError(f"cannot turn user quotas on for {mount_point}: {exc} "
                          f"(quotacheck -cum {mount_point} makes the quota file)") from None


def setquota_argv(uid: int, limits: QuotaLimits, mount_point: str) -> list[str]:
    """`setquota -u <uid> <bsoft> <bhard> <isoft> <ihard> <mountpoint>`, blocks of 1 KiB."""
    return ["setquota", "-u", str(uid), str(limits.block_soft), str(limits.block_hard),
            str(limits.inode_soft), str(limits.inode_hard), mount_point]


def set_limits(mount_point: str, uid: int, limits: QuotaLimits) -> None:
    try:
        kernel.run(setquota_argv(uid, limits, mount_point))
    except kernel.CommandFailed as exc:
        raise WardenError(f"Failed setting disk quota: {exc}") from None


def read_limits(mount_point: str, uid: int) -> QuotaLimits:
    try:
        dq = kernel.get_user_quota(mount_point, uid)
    except OSError as exc:
        raise WardenError(f"Failed getting disk quota: uid {uid} on {mount_point}: "
                          f"{exc.strerror}") from None
    return QuotaLimits(block_soft=dq.block_soft, block_hard=dq.block_hard,
                       inode_soft=dq.inode_soft, inode_hard=dq.inode_hard)


def read_usage(mount_point: str, uid: int) -> dict[str, int]:
    """Info's disk_stat: bytes and inodes the uid owns on the filesystem."""
    try:
        dq = kernel.get_user_quota(mount_point, uid)
    except OSError as exc:
        raise WardenError(f"Failed getting disk usage: uid {uid} on {mount_point}: "
                          f"{exc.strerror}") from None
    return {"bytes_used": dq.space_used, "inodes_used": dq.inodes_used}
