"""The aufs rootfs driver: a table of contents over layers, etcfiles, copying, usage.

A container's root is an aufs union of `<container>/upper` (read-write) over the read-only
rootfs, mounted on `<container>/rootfs`: the same layout and behaviour as the overlayfs driver,
with aufs's branch mount (warden-facts §10.7). Bind mounts are checked here and made by the exec
driver inside the container's own mount namespace, so the host never sees them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from warden_framework import hookimpl
from warden_framework.drivers import RootfsDriver
from warden_framework.errors import DriverError, DriverUnavailable, WardenError
from warden_rootfs_common import copying, etcfiles, usage

from . import branches, kernel, layers

NO_AUFS = "the kernel has no aufs filesystem (not in mainline Linux; use rootfs: overlayfs)"


class AufsDriver(RootfsDriver):
    @classmethod
    def check_host(cls, settings, proc_filesystems: Path = kernel.PROC_FILESYSTEMS) -> None:
        try:
            present = kernel.has_filesystem(branches.FSTYPE, proc_filesystems)
        except OSError as exc:
            raise DriverUnavailable(f"cannot read {proc_filesystems}: {exc.strerror}") from None
        if not present:
            raise DriverUnavailable(NO_AUFS)
        rootfs = settings.server.container_rootfs_path
        if not os.path.isdir(rootfs):
            raise DriverUnavailable(f"container_rootfs_path does not exist {rootfs} "
                                    f"(scripts/bootstrap.sh builds the default one)")

    @hookimpl
    def setup_fs(self, container, settings):
        lower = _lower_dir(container.rootfs_request or settings.server.container_rootfs_path)
        _check_bind_sources(container.binds)
        with _driver_errors():
            paths = layers.create_layers(container.path, lower)
        _write_etc_files(paths.rootfs, container, settings)
        return {"lower": str(lower), "upper": str(paths.upper)}

    @hookimpl
    def teardown_fs(self, container, record):
        with _driver_errors():
            layers.remove_layers(container.path)

    @hookimpl
    def copy_in(self, container, src_path, dst_path):
        try:
            copying.copy_in(container.rootfs_dir, src_path, dst_path, container.uid, container.uid)
        except copying.CopyError as exc:
            raise WardenError(str(exc)) from None

    @hookimpl
    def copy_out(self, container, src_path, dst_path, owner):
        try:
            copying.copy_out(container.rootfs_dir, src_path, dst_path, owner)
        except copying.CopyError as exc:
            raise WardenError(str(exc)) from None

    @hookimpl
    def info(self, container):
        """Disk usage of the upper branch, when no quota driver reports it."""
        if self.settings.drivers.disk or "rootfs" not in container.records:
            return None
        used, inodes = usage.upper_usage(layers.fs_paths(container.path).upper)
        return {"disk_stat": {"bytes_used": used, "inodes_used": inodes}}

    @hookimpl
    def recover(self, container, settings):
        """The host-side mount serves copy_in/out; mount it again if a reboot of the server
        lost it (the container's own namespace still holds its root)."""
        if "rootfs" not in container.records or kernel.is_mounted(container.rootfs_dir):
            return
        lower = Path((container.records["rootfs"] or {}).get("lower")
                     or settings.server.container_rootfs_path)
        with _driver_errors():
            layers.create_layers(container.path, lower)


def _lower_dir(requested: str) -> Path:
    try:
        return layers.check_rootfs(requested)
    except layers.RootfsNotFound as exc:
        raise WardenError(str(exc)) from None


def _check_bind_sources(binds: list[dict]) -> None:
    """The exec driver makes the bind mounts; a missing source is refused before anything."""
    for bind in binds:
        if not os.path.exists(bind["src"]):
            raise WardenError(f"Source path for bind mount does not exist: {bind['src']}")


def _write_etc_files(root: Path, container, settings) -> None:
    try:
        etcfiles.write_etc_files(root, container.id, container.container_ip, container.host_ip,
                                 container.uid, dns_servers=settings.network.dns_servers)
    except OSError as exc:  # e.g. a rootfs whose /etc is not a directory
        raise DriverError(f"aufs: writing /etc files in {root}: {exc.strerror}") from exc


@contextmanager
def _driver_errors() -> Iterator[None]:
    """Mount failures and unusable paths reach the client as DriverError naming them."""
    try:
        yield
    except (kernel.MountError, branches.BranchPathError, layers.RootfsNotFound) as exc:
        raise DriverError(f"aufs: {exc}") from exc
