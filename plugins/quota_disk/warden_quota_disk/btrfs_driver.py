"""The `btrfs` disk driver: each container gets a btrfs subvolume limited by its qgroup, and
the rootfs driver puts the container's writable layer inside it (records["disk"]["subvolume"]).
A table of contents over `volumes` and `limits`."""

from __future__ import annotations

from pathlib import Path

from warden_framework import hookimpl
from warden_framework.drivers import DiskDriver
from warden_framework.errors import DriverError, DriverUnavailable, WardenError

from . import kernel, volumes
from .limits import QuotaLimits, merge_limits, response_fields


class BtrfsDriver(DiskDriver):
    """The disk driver `btrfs`. Its hooks, all its own:

    - setup_host, teardown_host: the volumes filesystem (an image on a loop device when the
      depot is not on btrfs) with quotas enabled, and its removal (volumes.py);
    - setup_disk, teardown_disk, recover: a subvolume per container, made before setup_fs,
      deleted after teardown_fs, checked after a restart;
    - limit_disk, info: its qgroup's byte limit (limits.py) and its use.

    Every command is in kernel.py.
    """

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.config = volumes.config_from(settings)

    @classmethod
    def check_host(cls, settings) -> None:
        if not settings.quota.disk_quota_enabled:
            return
        volumes.config_from(settings)
        problems = volumes.host_problems()
        if problems:
            raise DriverUnavailable("; ".join(problems))

    @property
    def enabled(self) -> bool:
        return self.settings.quota.disk_quota_enabled

    def _subvolume(self, container, record: dict | None = None) -> tuple[Path, str | None]:
        """(subvolume path, qgroup id) from the record, or derived from the container id."""
        record = record if record is not None else container.records.get("disk") or {}
        path = record.get("subvolume") or volumes.subvolume_path(self.config, container.id)
        return Path(path), record.get("qgroup")

    def _qgroup(self, container, sync: bool = False) -> volumes.Qgroup:
        path, qgroupid = self._subvolume(container)
        return volumes.read_qgroup(path, qgroupid or f"0/{volumes.subvolume_id(path)}", sync)

    @hookimpl
    def setup_host(self, settings):
        if self.enabled:
            volumes.ensure_filesystem(self.config)

    @hookimpl
    def teardown_host(self, settings):
        volumes.remove_filesystem(self.config)

    @hookimpl
    def setup_disk(self, container, settings):
        """Runs before setup_fs: the rootfs driver puts upper/work under `subvolume`."""
        if not self.enabled:
            return {}
        path = volumes.subvolume_path(self.config, container.id)
        return {"subvolume": str(path), "qgroup": f"0/{volumes.create_subvolume(path)}"}

    @hookimpl
    def teardown_disk(self, container, record):
        """Runs after teardown_fs: refuses while a mount still uses the subvolume."""
        path, qgroupid = self._subvolume(container, record or {})
        volumes.delete_subvolume(self.config, path, qgroupid)

    def _limits(self, container) -> QuotaLimits:
        try:
            return volumes.limits_of(self._qgroup(container))
        except (kernel.CommandFailed, DriverError) as exc:
            raise WardenError(f"Failed getting disk quota: {exc}") from None

    @hookimpl
    def limit_disk(self, container, limits):
        merged = merge_limits(self._limits(container), limits)
        volumes.check_supported(merged)
        volumes.set_limit(self._subvolume(container)[0], volumes.limit_bytes(merged))
        return response_fields(self._limits(container))

    @hookimpl
    def info(self, container):
        if not self.enabled or not (container.records.get("disk") or {}).get("subvolume"):
            return None
        try:
            used = self._qgroup(container, sync=True).referenced
            inodes = kernel.count_inodes(str(self._subvolume(container)[0]))
        except (kernel.CommandFailed, DriverError, OSError) as exc:
            raise WardenError(f"Failed getting disk usage: {exc}") from None
        return {"disk_stat": {"bytes_used": used, "inodes_used": inodes}}

    @hookimpl
    def recover(self, container, settings):
        record = container.records.get("disk") or {}
        if record.get("subvolume") and not Path(record["subvolume"]).is_dir():
            raise DriverError(f"subvolume {record['subvolume']} of {container.id} is missing")
