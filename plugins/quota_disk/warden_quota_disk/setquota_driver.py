"""The `setquota` disk driver, Warden's design: a user quota for the container's uid on the
filesystem holding the depot. A table of contents over `userquota` and `limits`."""

from __future__ import annotations

from warden_framework import hookimpl
from warden_framework.drivers import DiskDriver
from warden_framework.errors import DriverError, DriverUnavailable, WardenError

from . import userquota
from .limits import QuotaLimits, merge_limits, response_fields

UNLIMITED = QuotaLimits()


class SetquotaDriver(DiskDriver):
    """The disk driver `setquota`. Its hooks, all its own:

    - setup_host: user quotas turned on for the depot's filesystem (quotaon);
    - setup_disk, teardown_disk: the container's uid reset to unlimited, when it is made and
      when it is released;
    - limit_disk, info: the uid's limits set and read back, its use (userquota.py, limits.py).

    Every command and quotactl is in kernel.py.
    """

    @classmethod
    def check_host(cls, settings) -> None:
        if not settings.quota.disk_quota_enabled:
            return
        problems = userquota.host_problems(settings.depot)
        if problems:
            raise DriverUnavailable(f"user quotas cannot work for the depot {settings.depot}: "
                                    + "; ".join(problems))

    @property
    def enabled(self) -> bool:
        return self.settings.quota.disk_quota_enabled

    def _mount_point(self) -> str:
        return userquota.depot_mount(self.settings.depot).mount_point

    def _target(self, container) -> tuple[str, int]:
        """(mount point, uid) from the step record, or derived when there is none."""
        record = container.records.get("disk") or {}
        uid = record.get("uid", _vcap(container))
        if uid is None:
            raise WardenError(f"container {container.id} has no uid")
        return record.get("mount_point") or self._mount_point(), uid

    @hookimpl
    def setup_host(self, settings):
        if self.enabled:
            userquota.turn_on(self._mount_point())

    @hookimpl
    def setup_disk(self, container, settings):
        """New containers start unlimited: reset whatever an earlier owner of the uid left."""
        if not self.enabled:
            return {}
        mount_point = self._mount_point()
        uid = _vcap(container)
        try:
            userquota.set_limits(mount_point, uid, UNLIMITED)
        except WardenError as exc:
            raise DriverError(str(exc)) from None
        return {"mount_point": mount_point, "uid": uid}

    @hookimpl
    def teardown_disk(self, container, record):
        record = record or {}
        uid = record.get("uid", _vcap(container))
        if not self.enabled or uid is None:
            return
        try:
            userquota.set_limits(record.get("mount_point") or self._mount_point(), uid, UNLIMITED)
        except WardenError as exc:
            raise DriverError(str(exc)) from None

    @hookimpl
    def limit_disk(self, container, limits):
        mount_point, uid = self._target(container)
        merged = merge_limits(userquota.read_limits(mount_point, uid), limits)
        userquota.set_limits(mount_point, uid, merged)
        return response_fields(userquota.read_limits(mount_point, uid))

    @hookimpl
    def info(self, container):
        if not self.enabled or "disk" not in container.records:
            return None
        mount_point, uid = self._target(container)
        return {"disk_stat": userquota.read_usage(mount_point, uid)}


def _vcap(container) -> int | None:
    """The host uid the quota counts: vcap's, in the container's user namespace range."""
    return None if container.uid is None else container.host_id(container.uid)
