"""The cgroup v1 limits driver: a table of contents over cgroups, devices, memory, cpu, pids,
stats and oom. Groups live at `<cgroup_root>/<ctrl>/<name_prefix>/<container id>`."""

from __future__ import annotations

from pathlib import Path

from warden_framework import cgroupfs, hookimpl
from warden_framework.drivers import LimitsDriver
from warden_framework.errors import DriverError, DriverUnavailable, WardenError

from . import cgroups, cpu, devices, kernel, memory, stats
from .errors import CgroupError
from .oom import OomWatch


class CgroupV1Driver(LimitsDriver):
    """The limits driver `cgroup_v1`. Its hooks, all its own:

    - teardown_host: the prefix groups, once empty (cgroups.py);
    - apply_limits, release_limits, recover: a container's groups in every hierarchy, made
      and restricted before its init exists, removed with their processes, checked and their
      limits written again after a restart (cgroups.py, devices.py);
    - limit_memory, limit_cpu, limit_pids: memory.limit_in_bytes with memsw, cpu.shares,
      pids.max (a container's own, Garden's, kept over the server's on recover);
    - info, event_sources: statistics, and the OOM eventfd from the first memory limit on.

    Every kernel call is in kernel.py.
    """

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.root = Path(settings.server.cgroup_root)
        self.prefix = settings.server.name_prefix
        self.hierarchies = cgroups.discover_hierarchies(self.root)
        self._open = cgroupfs.ContainerFiles()

    @classmethod
    def check_host(cls, settings) -> None:
        root = Path(settings.server.cgroup_root)
        try:
            cgroups.check_required(cgroups.discover_hierarchies(root), root)
        except CgroupError as exc:
            raise DriverUnavailable(str(exc)) from exc

    def _paths(self, container) -> cgroups.CgroupPaths:
        return cgroups.group_paths(self.root, self.prefix, container.id, self.hierarchies)

    @hookimpl
    def teardown_host(self, settings):
        cgroups.remove_prefix(self.root, self.prefix, self.hierarchies)

    @hookimpl
    def apply_limits(self, container, settings):
        """Groups made and restricted before the init exists; the exec driver has it born in
        them through the `tasks` files named in the record (a process moving itself is fast)."""
        paths = cgroups.create(self.root, self.prefix, container.id, self.hierarchies)
        devices.restrict(paths.devices)
        if "pids" in paths.by_controller:
            kernel.set_pids_max(paths["pids"], settings.server.container_pids_limit)
        return {"prefix": self.prefix, "controllers": sorted(paths.by_controller),
                "tasks": [str(path) for path in cgroups.tasks_files(paths)]}

    @hookimpl
    def release_limits(self, container, record):
        self._open.close(container.id)
        cgroups.remove(self.root, self.prefix, container.id, hierarchies=self.hierarchies)

    @hookimpl
    def limit_memory(self, container, limit):
        path = self._paths(container).memory
        if limit is not None:
            memory.set_limit(path, limit)
        return memory.get_limit(path)

    @hookimpl
    def limit_cpu(self, container, shares):
        path = self._paths(container).cpu
        if shares is not None:
            cpu.set_shares(path, shares)
        return cpu.get_shares(path)

    @hookimpl
    def limit_pids(self, container, limit):
        paths = self._paths(container)
        if "pids" not in paths.by_controller:
            raise WardenError("Failed setting pids limit: no pids controller on this host")
        if limit is not None:
            kernel.set_pids_max(paths["pids"], limit)
        return cgroupfs.pid_stat(paths["pids"])["limit"]

    @hookimpl
    def info(self, container):
        if "limits" not in container.records:
            return None
        paths = self._paths(container)
        files = self._open.stat_files(container.id)
        fields = {"memory_stat": stats.memory_stat(paths.memory, files.read),
                  "cpu_stat": stats.cpu_stat(paths.cpuacct, files.read)}
        if "pids" in paths.by_controller:
            fields["pid_stat"] = cgroupfs.pid_stat(paths["pids"], files.read)
        return fields

    @hookimpl
    def event_sources(self, container):
        """OOM watching starts with the first memory limit, as in Warden (facts §4.7)."""
        if container.memory_limit is None or "limits" not in container.records:
            return []
        return [self._open.oom_source(container.id, OomWatch.open, self._paths(container).memory)]

    @hookimpl
    def recover(self, container, settings):
        if "limits" not in container.records:
            return
        paths = self._paths(container)
        missing = [str(d) for d in paths.directories() if not d.is_dir()]
        if missing:
            raise DriverError(f"cgroups of {container.id} are missing: {', '.join(missing)}")
        if container.memory_limit is not None:
            memory.set_limit(paths.memory, container.memory_limit)
        if container.cpu_shares is not None:
            cpu.set_shares(paths.cpu, container.cpu_shares)
        if "pids" in paths.by_controller:  # the configured limit may have changed
            kernel.set_pids_max(paths["pids"], _pids_limit(container, settings))


def _pids_limit(container, settings) -> int | None:
    """The container's own limit (Garden's pid_limits) if it has one, else the server's."""
    if container.pids_limit is not None:
        return container.pids_limit
    return settings.server.container_pids_limit
