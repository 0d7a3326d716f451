"""btrfs volumes of the btrfs driver: the filesystem holding per-container subvolumes (a
loop-mounted image made by setup_host, unless the volumes directory is on btrfs already),
each container's subvolume, its qgroup limit and its usage. btrfs-progs via `kernel.run`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from warden_framework.errors import ConfigError, DriverError, WardenError

from . import kernel
from .limits import BLOCK_SIZE, QuotaLimits, bytes_to_blocks
from .mounts import Mount, existing_ancestor, mount_of, mounts_using, parse_mountinfo

PLUGIN = "quota_disk"
CONFIG_KEYS = ("volumes", "image", "image_size")
DEFAULT_IMAGE_SIZE = 4 * 2**30
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class VolumeConfig:
    """Where subvolumes live (`volumes`) and the image that holds them when it is not btrfs."""

    volumes: Path
    image: Path
    image_size: int


@dataclass(frozen=True)
class Qgroup:
    """A level-0 qgroup read back: bytes referenced and exclusive, limits (0 = none)."""

    qgroupid: str
    referenced: int
    exclusive: int
    max_referenced: int
    max_exclusive: int


def config_from(settings) -> VolumeConfig:
    """`plugins: {quota_disk: {volumes, image, image_size}}`, defaulting beside the depot:
    `<depot>.volumes` and `<depot>.btrfs`, 4 GiB sparse."""
    raw = settings.plugins.get(PLUGIN) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"plugins.{PLUGIN}: expected a mapping")
    for key in raw:
        if key not in CONFIG_KEYS:
            raise ConfigError(f"plugins.{PLUGIN}.{key}: unknown key (known: {', '.join(CONFIG_KEYS)})")
    depot = os.path.abspath(settings.depot)
    volumes = _absolute("volumes", raw.get("volumes") or f"{depot}.volumes")
    image = _absolute("image", raw.get("image") or f"{depot}.btrfs")
    return VolumeConfig(volumes=volumes, image=image,
                        image_size=parse_size(raw.get("image_size", DEFAULT_IMAGE_SIZE)))


def _absolute(key: str, value: object) -> Path:
    if not isinstance(value, str) or not os.path.isabs(value):
        raise ConfigError(f"plugins.{PLUGIN}.{key}: expected an absolute path, got {value!r}")
    return Path(value)


def parse_size(value: object) -> int:
    """Bytes, or a number with K/M/G/T (powers of 1024): 4G, 512MiB."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"plugins.{PLUGIN}.image_size: expected a size like 4G, got {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


# ------------------------------------------------------------------------------ host

def host_problems() -> list[str]:
    """What this host lacks for btrfs qgroups, each with its fix; [] when nothing."""
    problems = []
    if "\tbtrfs\n" not in kernel.read_filesystems() and not kernel.module_available("btrfs"):
        problems.append("the kernel has no btrfs filesystem: not in /proc/filesystems and no "
                        "btrfs module (CONFIG_BTRFS_FS; modprobe btrfs)")
    missing = [cmd for cmd in ("btrfs", "mkfs.btrfs") if not kernel.have_command(cmd)]
    if missing:
        problems.append(f"btrfs-progs is not installed: no {' or '.join(missing)} on PATH "
                        f"(apt-get install btrfs-progs)")
    return problems


def current_mounts() -> list[Mount]:
    return parse_mountinfo(kernel.read_mountinfo())


def is_our_image(mount: Mount, cfg: VolumeConfig) -> bool:
    """The mount is the configured image on a loop device, mounted at the volumes dir."""
    backing = kernel.loop_backing_file(mount.source)
    return (mount.fstype == "btrfs" and mount.mount_point == os.path.realpath(cfg.volumes)
            and backing is not None and _same_file(backing, cfg.image))


def _same_file(backing: str, image: Path) -> bool:
    return os.path.realpath(backing.removesuffix(" (deleted)")) == os.path.realpath(image)


def ensure_filesystem(cfg: VolumeConfig) -> None:
    """Idempotent: the volumes dir is on btrfs with quotas enabled; if it was not, the
    image (made on first use) is loop-mounted there."""
    kernel.make_directory(cfg.volumes)
    if mount_of(existing_ancestor(cfg.volumes), current_mounts()).fstype != "btrfs":
        if not cfg.image.exists():
            make_image(cfg)
        _run(["mount", "-t", "btrfs", "-o", "loop", str(cfg.image), str(cfg.volumes)],
             f"mount {cfg.image} on {cfg.volumes}")
    _run(["btrfs", "quota", "enable", str(cfg.volumes)], f"enable quotas on {cfg.volumes}")


def make_image(cfg: VolumeConfig) -> None:
    """A sparse file of image_size made into btrfs under a temporary name, then renamed, so
    a server killed during mkfs never leaves a half-made image under the real name."""
    partial = cfg.image.with_name(cfg.image.name + ".new")
    kernel.make_directory(cfg.image.parent)
    kernel.remove_file(partial)
    kernel.make_sparse_file(partial, cfg.image_size)
    try:
        _run(["mkfs.btrfs", "-q", str(partial)], f"make btrfs image {cfg.image}")
    except DriverError:
        kernel.remove_file(partial)
        raise
    kernel.rename(partial, cfg.image)


def remove_filesystem(cfg: VolumeConfig) -> None:
    """Idempotent: unmount our image, detach its loop devices, delete it and the volumes dir.
    A btrfs that was not made from the image (an operator's) is left mounted."""
    for mount in reversed(current_mounts()):
        if is_our_image(mount, cfg):
            _run(["umount", str(cfg.volumes)], f"unmount {cfg.volumes}")
    for device in kernel.loop_devices_of(str(cfg.image)):
        detach(device, cfg.image)
    if mount_of(existing_ancestor(cfg.volumes), current_mounts()).mount_point == os.path.realpath(cfg.volumes):
        return  # still a mount point: not ours to remove
    kernel.remove_file(cfg.image)
    kernel.remove_empty_directory(cfg.volumes)


def detach(device: str, image: Path) -> None:
    """losetup -d; a device that the kernel's autoclear freed meanwhile is not an error."""
    try:
        kernel.run(["losetup", "-d", device])
    except kernel.CommandFailed as exc:
        if device in kernel.loop_devices_of(str(image)):
            raise DriverError(f"btrfs: cannot detach {device} ({image}): {exc}") from None


# ------------------------------------------------------------------------------ containers

def subvolume_path(cfg: VolumeConfig, container_id: str) -> Path:
    return cfg.volumes / container_id


def create_subvolume(path: Path) -> int:
    """Make the subvolume; return its id (its qgroup is 0/<id>, made by the kernel)."""
    _run(["btrfs", "subvolume", "create", str(path)], f"create subvolume {path}")
    return subvolume_id(path)


def subvolume_id(path: Path) -> int:
    return int(_run(["btrfs", "inspect-internal", "rootid", str(path)],
                    f"read the subvolume id of {path}").strip())


def delete_subvolume(cfg: VolumeConfig, path: Path, qgroupid: str | None) -> None:
    """Delete the subvolume with its files, wait until the kernel dropped it, and remove its
    qgroup (older kernels keep it as stale; 6.18 drops it itself). Idempotent."""
    if path.exists():
        users = mounts_using(str(path), current_mounts())
        if users:
            raise DriverError(f"subvolume {path} is still used by the mount on "
                              f"{users[0].mount_point}: tear the rootfs down first")
        qgroupid = qgroupid or f"0/{subvolume_id(path)}"
        _run(["btrfs", "subvolume", "delete", "--commit-after", str(path)], f"delete subvolume {path}")
        _run(["btrfs", "subvolume", "sync", str(cfg.volumes), qgroupid.split("/")[1]],
             f"wait for subvolume {path} to be dropped")
    if qgroupid:
        try:
            kernel.run(["btrfs", "qgroup", "destroy", qgroupid, str(cfg.volumes)])
        except kernel.CommandFailed as exc:
            if "No such file or directory" not in exc.stderr:
                raise DriverError(f"cannot destroy qgroup {qgroupid} of {cfg.volumes}: {exc}") from None


def set_limit(path: Path, max_bytes: int) -> None:
    """Referenced-bytes limit of the subvolume's qgroup; 0 removes it."""
    try:
        kernel.run(["btrfs", "qgroup", "limit", str(max_bytes) if max_bytes else "none", str(path)])
    except kernel.CommandFailed as exc:
        raise WardenError(f"Failed setting disk quota: {exc}") from None


def read_qgroup(path: Path, qgroupid: str, sync: bool = False) -> Qgroup:
    """The qgroup's numbers; `sync` commits first, so bytes just written are counted."""
    argv = ["btrfs", "qgroup", "show", "-re", "--raw", "-f", str(path)] + (["--sync"] if sync else [])
    out = kernel.run(argv)
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == qgroupid and len(fields) >= 5:
            numbers = [0 if f == "none" else int(f) for f in fields[1:5]]
            return Qgroup(qgroupid, *numbers)
    raise kernel.CommandFailed(argv, 0, f"no qgroup {qgroupid} in the output")


def limits_of(qgroup: Qgroup) -> QuotaLimits:
    """A qgroup as quota limits: its referenced-bytes limit is the hard block limit."""
    return QuotaLimits(block_hard=bytes_to_blocks(qgroup.max_referenced))


def check_supported(limits: QuotaLimits) -> None:
    """qgroups have one hard limit on bytes: refuse soft and inode limits other than 0."""
    if limits.inode_soft or limits.inode_hard:
        raise WardenError("btrfs qgroups cannot limit inodes")
    if limits.block_soft:
        raise WardenError("btrfs qgroups have no soft limit: set block_soft/byte_soft to 0 "
                          "and use a hard limit (byte_limit, block_limit)")


def limit_bytes(limits: QuotaLimits) -> int:
    return limits.block_hard * BLOCK_SIZE


def _run(argv: list[str], what: str) -> str:
    try:
        return kernel.run(argv)
    except kernel.CommandFailed as exc:
        raise DriverError(f"btrfs: cannot {what}: {exc}") from None
