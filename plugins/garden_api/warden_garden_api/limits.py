"""The core's limit calls as Garden uses them: all of a create's limits and net rules in one
call (run in the pool under the container's lock), and the Current*Limits answers read back
from the kernel through the same calls with nothing to set (garden-api.md §4.12)."""

from __future__ import annotations

from warden_framework.container import Container
from warden_framework.errors import WardenError
from warden_framework.orchestrator import Orchestrator

from .create_spec import SCOPE_EXCLUSIVE, CreatePlan

# What the Warden protocol reports for a direction without shaping (warden-facts §5.1).
NO_BANDWIDTH_LIMIT = 0xFFFFFFFF
DISK_FIELDS = ("byte_soft", "byte_hard", "inode_soft", "inode_hard")


def apply_at_create(orchestrator: Orchestrator, container: Container, plan: CreatePlan) -> None:
    """Limits first (memory, cpu, disk, pids, bandwidth), then NetIn and NetOut rules. The
    first failure raises; the caller destroys the container."""
    limits = plan.limits
    if limits.memory is not None:
        orchestrator.limit_memory(container, limits.memory)
    if limits.cpu_shares is not None:
        orchestrator.limit_cpu(container, limits.cpu_shares)
    if limits.disk and not orchestrator.limit_disk(container, limits.disk):
        raise WardenError("disk limits need a disk quota: this server has none (drivers.disk "
                          "and quota.disk_quota_enabled)")
    if limits.pids is not None:
        orchestrator.limit_pids(container, limits.pids)
    if limits.bandwidth is not None:
        orchestrator.limit_bandwidth(container, *limits.bandwidth)
    for host_port, container_port in plan.net_in:
        orchestrator.net_in(container, host_port or None, container_port or None)
    for rule in plan.net_out:
        orchestrator.net_out(container, rule)


def current_memory(orchestrator: Orchestrator, container: Container) -> dict:
    """The limit the kernel holds, once one was set (a Garden create or a Warden LimitMemory)."""
    if container.memory_limit is None:
        return {}
    return {"limit_in_bytes": orchestrator.limit_memory(container, None)}


def current_cpu(orchestrator: Orchestrator, container: Container) -> dict:
    """The shares the kernel holds, once some were set: Garden's weight and its older name."""
    if container.cpu_shares is None:
        return {}
    shares = orchestrator.limit_cpu(container, None)
    return {"weight": shares, "limit_in_shares": shares}


def current_bandwidth(orchestrator: Orchestrator, container: Container) -> dict:
    """The shaping into the container read back (the driver shapes both ways alike)."""
    if not orchestrator.hooks.has("network"):
        return {}
    rate, burst = orchestrator.limit_bandwidth(container, None, None)
    if rate in (None, NO_BANDWIDTH_LIMIT):
        return {}
    return {"rate": rate, "burst": burst}


def current_disk(orchestrator: Orchestrator, container: Container) -> dict:
    """The quota read back (zero fields omitted, as Garden does); its scope is exclusive, as
    the quota never counts the image (create_spec.disk_limits)."""
    kept = orchestrator.limit_disk(container, {})
    fields = {name: kept[name] for name in DISK_FIELDS if kept.get(name)}
    return {**fields, "scope": SCOPE_EXCLUSIVE} if fields else {}


def cpu_shares(orchestrator: Orchestrator, container: Container) -> int:
    """The kernel's cpu shares of the container (0 without a limits driver), for Metrics."""
    if not orchestrator.hooks.has("limits"):
        return 0
    return orchestrator.limit_cpu(container, None) or 0
