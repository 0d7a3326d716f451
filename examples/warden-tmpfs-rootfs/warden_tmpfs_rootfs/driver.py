"""The tmpfs rootfs driver: each container's root is a private tmpfs mounted on
`<container>/rootfs`, filled with a copy of the base rootfs whose ids are shifted into the
container's user namespace range. A table of contents over kernel.py (the only kernel calls),
tree.py (the copies) and etc.py (the per-container files).

Nothing outlives the tmpfs: when its last mount goes, its files go. The host's mount serves
copy_in, copy_out and info; the container's init holds a copy of it in its own mount namespace.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from warden_framework import hookimpl
from warden_framework.drivers import RootfsDriver
from warden_framework.errors import ConfigError, DriverError, DriverUnavailable, WardenError

from . import etc, kernel, tree

PLUGIN = "tmpfs_rootfs"  # its section in the config: plugins: {tmpfs_rootfs: {size: 512M}}
DEFAULT_SIZE = 512 << 20
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size_from(settings) -> int:
    """`plugins.tmpfs_rootfs.size`: bytes, or a number with K, M, G or T (powers of 1024)."""
    raw = settings.plugins.get(PLUGIN) or {}
    if not isinstance(raw, dict) or set(raw) - {"size"}:
        raise ConfigError(f"plugins.{PLUGIN}: expected a mapping with the key size, got {raw!r}")
    value = raw.get("size", DEFAULT_SIZE)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"plugins.{PLUGIN}.size: expected a size like 512M, got {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


class TmpfsRootfsDriver(RootfsDriver):
    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.size = size_from(settings)

    @classmethod
    def check_host(cls, settings, proc_filesystems: Path = kernel.PROC_FILESYSTEMS) -> None:
        size_from(settings)
        if not kernel.has_tmpfs(proc_filesystems):
            raise DriverUnavailable("tmpfs: the kernel has no tmpfs filesystem (CONFIG_TMPFS)")
        rootfs = settings.server.container_rootfs_path
        if not os.path.isdir(rootfs):
            raise DriverUnavailable(f"tmpfs: container_rootfs_path {rootfs} is not a directory "
                                    f"(scripts/bootstrap.sh builds the default one)")
        if settings.drivers.disk:
            raise DriverUnavailable(
                f"tmpfs: a disk driver ({settings.drivers.disk}) cannot limit a tmpfs root; set "
                f"drivers.disk: null (plugins.{PLUGIN}.size bounds each container's disk)")

    @hookimpl
    def setup_fs(self, container, settings):
        lower = _lower_dir(container.rootfs_request or settings.server.container_rootfs_path)
        for bind in container.binds:  # the exec driver makes them; refuse before anything
            if not os.path.exists(bind["src"]):
                raise WardenError(f"Source path for bind mount does not exist: {bind['src']}")
        root = container.rootfs_dir
        with _driver_errors(f"making the tmpfs root {root}"):
            top = lower.stat()
            root.mkdir(mode=0o755)
            kernel.mount_tmpfs(root, self.size, top.st_mode & 0o7777,
                               container.host_id(top.st_uid), container.host_id(top.st_gid))
        with _driver_errors(f"copying {lower} into {root}"):
            tree.copy_base(lower, root, container.id_map)
        with _driver_errors(f"writing /etc files in {root}"):
            etc.write_all(root, _identity(container), settings.network.dns_servers)
        return {"lower": str(lower), "size": self.size}

    @hookimpl
    def teardown_fs(self, container, record):
        root = container.rootfs_dir
        with _driver_errors(f"removing the tmpfs root {root}"):
            kernel.unmount_all(root)
            _remove(root)

    @hookimpl
    def copy_in(self, container, src_path, dst_path):
        root = self._mounted_root(container)
        vcap = container.host_id(container.uid)
        with _copy_errors("copy_in", src_path, dst_path):
            tree.copy_in(root, src_path, dst_path, (vcap, vcap))

    @hookimpl
    def copy_out(self, container, src_path, dst_path, owner):
        root = self._mounted_root(container)
        with _copy_errors("copy_out", src_path, dst_path):
            tree.copy_out(root, src_path, dst_path, _owner_ids(owner) if owner else (0, 0))

    @hookimpl
    def info(self, container, full):
        """The tmpfs's own counters, for a full info only (the rootfs contract's rule, though
        statvfs costs no walk)."""
        if not full or "rootfs" not in container.records:
            return None
        if not kernel.is_mounted(container.rootfs_dir):
            return None
        used, inodes = kernel.usage(container.rootfs_dir)
        return {"disk_stat": {"bytes_used": used, "inodes_used": inodes}}

    @hookimpl
    def recover(self, container, settings):
        """A root still mounted is the container's, intact. A root the host lost cannot come
        back: its files lived only in that tmpfs (the init's copy of the mount, if the init is
        alive, is out of the host's reach), so the server is told to destroy the container."""
        if "rootfs" not in container.records or kernel.is_mounted(container.rootfs_dir):
            return
        raise WardenError(f"tmpfs: the root of {container.id} is no longer mounted on "
                          f"{container.rootfs_dir}; a tmpfs does not outlive its mount, so its "
                          f"files are lost")

    @staticmethod
    def _mounted_root(container) -> Path:
        """The host's mount of the root: without it a copy would land in the empty directory
        below, where the container never looks."""
        if not kernel.is_mounted(container.rootfs_dir):
            raise WardenError(f"tmpfs: the root of {container.id} is not mounted on "
                              f"{container.rootfs_dir}")
        return container.rootfs_dir


def _lower_dir(requested: str) -> Path:
    if not os.path.isdir(requested):
        raise WardenError(f"rootfs {requested} not found")
    return Path(requested).resolve()


def _identity(container) -> etc.Identity:
    root = container.host_id(0)
    vcap = container.host_id(container.uid)
    return etc.Identity(container_id=container.id, container_ip=container.container_ip,
                        host_ip=container.host_ip, uid=container.uid,
                        root=(root, root), vcap=(vcap, vcap))


def _remove(root: Path) -> None:
    """Delete the mount point; only ever called with nothing mounted below it."""
    try:
        os.rmdir(root)
    except FileNotFoundError:
        return
    except OSError:  # files written into the bare directory: not the container's, but ours
        shutil.rmtree(root)  # fd-based on Linux: never follows a symlink out of the tree


def _owner_ids(owner: str) -> tuple[int, int]:
    """Host (uid, gid) of chown's "USER[:GROUP]"; a bare USER takes the user's login group."""
    user, _, group = owner.partition(":")
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        gid = (int(group) if group.isdigit() else grp.getgrnam(group).gr_gid) if group \
            else entry.pw_gid
    except KeyError:
        raise WardenError(f"copy_out: invalid owner {owner!r}: no such user or group") from None
    return entry.pw_uid, gid


@contextmanager
def _driver_errors(action: str) -> Iterator[None]:
    """Kernel and file failures reach the client as DriverError("tmpfs: ...") naming them."""
    try:
        yield
    except kernel.MountError as exc:
        raise DriverError(f"tmpfs: {exc}") from exc
    except (tree.CopyError, ValueError) as exc:  # ValueError: an id outside the range
        raise DriverError(f"tmpfs: {action}: {exc}") from exc
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise DriverError(f"tmpfs: {action}: {where}{exc.strerror or exc}") from exc


@contextmanager
def _copy_errors(op: str, src_path: str, dst_path: str) -> Iterator[None]:
    try:
        yield
    except (tree.CopyError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        name = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        raise WardenError(f"{op} {src_path} to {dst_path}: {reason}{name}") from None
