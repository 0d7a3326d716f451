"""The overlayfs rootfs driver: a table of contents over layers, etcfiles, copying, usage.

A container's root is an overlay of the read-only rootfs (lower) and `<container>/upper`,
mounted on `<container>/rootfs`. Bind mounts are checked here and made by the exec driver
inside the container's own mount namespace, so the host never sees them.
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

from . import kernel, layers


class OverlayfsDriver(RootfsDriver):
    @classmethod
    def check_host(cls, settings) -> None:
        with open("/proc/filesystems") as f:
            if "\toverlay\n" not in f.read():
                raise DriverUnavailable("the kernel has no overlay filesystem (modprobe overlay)")
        rootfs = settings.server.container_rootfs_path
        if not os.path.isdir(rootfs):
            raise DriverUnavailable(f"container_rootfs_path does not exist {rootfs} "
                                    f"(scripts/bootstrap.sh builds the default one)")

    @hookimpl
    def setup_fs(self, container, settings):
        try:
            lower = layers.check_rootfs(container.rootfs_request or settings.server.container_rootfs_path)
        except layers.RootfsNotFound as exc:
            raise WardenError(str(exc)) from None
        for bind in container.binds:
            if not os.path.exists(bind["src"]):
                raise WardenError(f"Source path for bind mount does not exist: {bind['src']}")
        with _driver_errors(f"making the layers in {container.path}"):
            paths = layers.create_layers(container.path, lower, _layer_dir(container))
        with _driver_errors(f"writing /etc files in {paths.rootfs}"):
            etcfiles.write_etc_files(paths.rootfs, container.id, container.container_ip,
                                     container.host_ip, container.uid,
                                     dns_servers=settings.network.dns_servers)
        return {"lower": str(lower)}

    @hookimpl
    def teardown_fs(self, container, record):
        with _driver_errors(f"removing the layers in {container.path}"):
            layers.remove_layers(container.path, _layer_dir(container))

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
        """Disk usage of the upper layer, when no quota driver reports it."""
        if self.settings.drivers.disk or "rootfs" not in container.records:
            return None
        used, inodes = usage.upper_usage(layers.fs_paths(container.path, _layer_dir(container)).upper)
        return {"disk_stat": {"bytes_used": used, "inodes_used": inodes}}

    @hookimpl
    def recover(self, container, settings):
        """The host-side mount serves copy_in/out; mount it again if a reboot of the server
        lost it (the container's own namespace still holds its root)."""
        if "rootfs" not in container.records:
            return
        if not kernel.is_mounted(container.rootfs_dir):
            lower = Path((container.records["rootfs"] or {}).get("lower")
                         or settings.server.container_rootfs_path)
            with _driver_errors(f"remounting the layers in {container.path}"):
                layers.create_layers(container.path, lower, _layer_dir(container))


def _layer_dir(container) -> Path | None:
    """The volume a disk driver made for this container's writable layer, if any."""
    subvolume = (container.records.get("disk") or {}).get("subvolume")
    return Path(subvolume) if subvolume else None


@contextmanager
def _driver_errors(action: str) -> Iterator[None]:
    """OS-level failures (a mount, mkdir, chown, rmtree, an /etc write) and a rootfs gone
    since the request was checked reach the client as DriverError saying what failed."""
    try:
        yield
    except (kernel.MountError, layers.RootfsNotFound) as exc:  # their text names the path
        raise DriverError(f"overlayfs: {exc}") from exc
    except OSError as exc:
        raise DriverError(f"overlayfs: {action}: {exc.strerror or exc}") from exc
