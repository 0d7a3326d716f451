"""The cgroup v2 limits driver: a table of contents over hierarchy, groups, devices, memory,
cpu, pids, stats and oom. Groups live at `<cgroup_root>/<name_prefix>/<container id>`."""

from __future__ import annotations

from pathlib import Path

from warden_framework import cgroupfs, hookimpl
from warden_framework.drivers import LimitsDriver
from warden_framework.errors import DriverError, DriverUnavailable

from . import cpu, devices, groups, hierarchy, kernel, memory, stats
from .oom import OomWatch


class CgroupV2Driver(LimitsDriver):
    """The limits driver `cgroup_v2`. Its hooks, all its own:

    - setup_host, teardown_host: the controllers handed down to the prefix group, and the
      prefix group removed once empty (hierarchy.py);
    - apply_limits, release_limits, recover: a container's leaf group with its pids limit
      and device program, emptied and removed, checked and its limits written again after a
      restart (groups.py, devices.py);
    - limit_memory, limit_cpu, limit_pids: memory.max (answered as v1 does), cpu.weight from
      shares, pids.max;
    - info, event_sources: statistics in v1's terms, and the OOM watch on memory.events.

    Every kernel call is in kernel.py.
    """

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.root = Path(settings.server.cgroup_root)
        self.prefix = settings.server.name_prefix
        self._open = cgroupfs.ContainerFiles()

    @classmethod
    def check_host(cls, settings) -> None:
        root = Path(settings.server.cgroup_root)
        reason = hierarchy.unavailable_reason(root) or devices.check_support()
        if reason:
            raise DriverUnavailable(reason)

    def _group(self, container) -> Path:
        return groups.group_path(self.root, self.prefix, container.id)

    @hookimpl
    def setup_host(self, settings):
        hierarchy.setup(self.root, self.prefix)

    @hookimpl
    def teardown_host(self, settings):
        hierarchy.teardown(self.root, self.prefix)

    @hookimpl
    def apply_limits(self, container, settings):
        """The group is made and restricted before the init exists; the exec driver has the
        init born in it by writing "0" into the cgroup.procs named in "tasks"."""
        group = self._group(container)
        groups.create(group)
        kernel.set_pids_max(group, settings.server.container_pids_limit)
        devices.attach(group)
        return {"prefix": self.prefix, "cgroup": "v2", "group": str(group),
                "tasks": [str(groups.procs_file(group))]}

    @hookimpl
    def release_limits(self, container, record):
        self._open.close(container.id)
        groups.remove(self._group(container))

    @hookimpl
    def limit_memory(self, container, limit):
        group = self._group(container)
        if limit is not None:
            memory.set_limit(group, limit)
        return memory.get_limit(group)

    @hookimpl
    def limit_cpu(self, container, shares):
        """The kernel keeps a weight; the answer is in shares, the client's own value while
        the weight is still the one it converts to (cpu.shares_kept)."""
        group = self._group(container)
        if shares is not None:
            cpu.set_shares(group, shares)
        requested = shares if shares is not None else container.cpu_shares
        return cpu.shares_kept(cpu.get_weight(group), requested)

    @hookimpl
    def limit_pids(self, container, limit):
        group = self._group(container)
        if limit is not None:
            kernel.set_pids_max(group, limit)
        return cgroupfs.pid_stat(group)["limit"]

    @hookimpl
    def info(self, container):
        if "limits" not in container.records:
            return None
        group = self._group(container)
        files = self._open.stat_files(container.id)
        return {"memory_stat": stats.memory_stat(group, files),
                "cpu_stat": stats.cpu_stat(group, files.read),
                "pid_stat": cgroupfs.pid_stat(group, files.read)}

    @hookimpl
    def event_sources(self, container):
        """OOM watching starts with the first memory limit, as in Warden (facts §4.7)."""
        if container.memory_limit is None or "limits" not in container.records:
            return []
        return [self._open.oom_source(container.id, OomWatch.open, self._group(container))]

    @hookimpl
    def recover(self, container, settings):
        if "limits" not in container.records:
            return
        group = self._group(container)
        missing = [str(p) for p in (group, group / memory.MEMORY_MAX, group / cpu.CPU_WEIGHT,
                                    group / cgroupfs.PIDS_MAX) if not p.exists()]
        if missing:
            raise DriverError(f"cgroup of {container.id} is missing: {', '.join(missing)}")
        if container.memory_limit is not None:
            memory.set_limit(group, container.memory_limit)
        if container.cpu_shares is not None:
            cpu.set_shares(group, container.cpu_shares)
        # the configured pids limit may have changed since the container was made
        kernel.set_pids_max(group, container.pids_limit if container.pids_limit is not None
                            else settings.server.container_pids_limit)
        if devices.attached(group) == 0:
            devices.attach(group)
