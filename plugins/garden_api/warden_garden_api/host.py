"""What Garden asks about the host rather than a container: its capacity (garden-api.md §4.2),
the address clients reach it at (Info's ExternalIP), and the CPU share of one cgroup cpu
share (Metrics' CPUEntitlement). Read from /proc and the filesystem, no kernel state changed."""

from __future__ import annotations

import errno
import os
import socket

from warden_framework.orchestrator import Orchestrator

MEMINFO = "/proc/meminfo"
# An address of TEST-NET-3 (RFC 5737): a UDP socket "connected" to it picks the source
# address of the host's default route; no packet is sent.
ROUTE_PROBE = ("203.0.113.1", 9)


def memory_total() -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    with open(MEMINFO) as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError(errno.ENODATA, f"no MemTotal in {MEMINFO}")


def capacity(orchestrator: Orchestrator) -> dict:
    """Total memory, the size of the depot's filesystem, and how many containers the pools
    let exist at once (one uid and one /30 each). schedulable_disk_in_bytes is left out
    (Garden omits zeros): this server keeps no image store whose room it could report."""
    depot = os.statvfs(orchestrator.depot if orchestrator.depot.exists() else "/")
    pools = orchestrator.pools
    return {"memory_in_bytes": memory_total(), "disk_in_bytes": depot.f_blocks * depot.f_frsize,
            "max_containers": min(pools.uids.size, pools.network.size)}


def external_ip() -> str:
    """The host's primary IPv4 address (the source of its default route), "" without one.
    Guardian reports its configured external IP, by default this same address."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(ROUTE_PROBE)
            return probe.getsockname()[0]
    except OSError:
        return ""


def cpu_entitlement_per_share() -> float:
    """The fraction of one CPU a single cpu share entitles a container to: Guardian's default
    (100 * cores / memory in MiB percent), which makes a host's memory and CPUs run out
    together when shares follow memory, as Diego sets them."""
    cores = os.cpu_count() or 1
    return cores / (memory_total() / (1024 * 1024))
