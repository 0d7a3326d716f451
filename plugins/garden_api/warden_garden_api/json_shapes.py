"""Garden's answers about a container, built from the core's: ContainerInfo (garden-api.md
§6.4) and Metrics (§6.5), with Go's field names, and their zero values for the entries of a
BulkInfo or BulkMetrics whose handle failed.

Where the core has no number, the answer says so as Garden can: NetworkStat is null (its
newer clients declare it nullable) without a network driver; any other missing counter is 0,
which every field of Garden's stats means when the kernel does not count it (memory.stat
without swap accounting, cgroup v2's missing pgpgin/pgpgout, no pids controller).
"""

from __future__ import annotations

import os
import time

from warden_framework.container import Container

from .process_spec import INTERNAL_PREFIX

# MemoryStat's keys: the v1 memory.stat names Garden sends, all of them, always.
MEMORY_KEYS = (
    "active_anon", "active_file", "cache", "hierarchical_memory_limit", "inactive_anon",
    "inactive_file", "mapped_file", "pgfault", "pgmajfault", "pgpgin", "pgpgout", "rss",
    "total_active_anon", "total_active_file", "total_cache", "total_inactive_anon",
    "total_inactive_file", "total_mapped_file", "total_pgfault", "total_pgmajfault",
    "total_pgpgin", "total_pgpgout", "total_rss", "total_unevictable", "unevictable", "swap",
    "hierarchical_memsw_limit", "total_swap",
)  # fmt: skip
NANOSECONDS = 1_000_000_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the core's cpu_stat user/system are USER_HZ ticks

ZERO_INFO = {"State": "", "Events": None, "HostIP": "", "ContainerIP": "", "ExternalIP": "",
             "ContainerPath": "", "ProcessIDs": None, "Properties": None, "MappedPorts": None}


def container_info(container: Container, fields: dict, has_network: bool,
                   external_ip: str) -> dict:
    """ContainerInfo from orchestrator.info's `fields`. The addresses are the container's /30
    only when a network driver made them real; ProcessIDs are its running jobs but the
    server's own StreamIn/StreamOut processes; MappedPorts are its NetIn rules."""
    return {
        "State": fields["state"],
        "Events": list(fields.get("events") or []),
        "HostIP": (fields.get("host_ip") or "") if has_network else "",
        "ContainerIP": (fields.get("container_ip") or "") if has_network else "",
        "ExternalIP": external_ip,
        "ContainerPath": fields.get("container_path") or "",
        "ProcessIDs": [job.process_id for job in list(container.jobs.values())
                       if job.exit_status is None
                       and not job.process_id.startswith(INTERNAL_PREFIX)],
        "Properties": dict(container.properties),
        "MappedPorts": [{"HostPort": host, "ContainerPort": inside}
                        for host, inside in container.net_in_rules],
    }


def metrics(container: Container, fields: dict, shares: int,
            entitlement_per_share: float) -> dict:
    """Metrics from orchestrator.info's `fields`, the container's cpu `shares` and the CPU
    fraction one share is worth (host.cpu_entitlement_per_share)."""
    age = max(0, int((time.time() - container.created_at) * NANOSECONDS))
    cpu = fields.get("cpu_stat") or {}
    disk = fields.get("disk_stat") or {}
    pids = fields.get("pid_stat") or {}
    network = fields.get("network_stat")
    return {
        "MemoryStat": memory_stat(fields.get("memory_stat") or {}),
        "CPUStat": {"Usage": cpu.get("usage", 0), "User": _ticks_ns(cpu.get("user", 0)),
                    "System": _ticks_ns(cpu.get("system", 0))},
        # The quota and the upper layer count what the container wrote; the shared read-only
        # image is no container's, so total and exclusive are the same number here.
        "DiskStat": {"TotalBytesUsed": disk.get("bytes_used", 0),
                     "TotalInodesUsed": disk.get("inodes_used", 0),
                     "ExclusiveBytesUsed": disk.get("bytes_used", 0),
                     "ExclusiveInodesUsed": disk.get("inodes_used", 0)},
        "NetworkStat": None if network is None else {"RxBytes": network["rx_bytes"],
                                                     "TxBytes": network["tx_bytes"]},
        "PidStat": {"Current": pids.get("current", 0), "Max": pids.get("limit", 0)},
        "Age": age,
        "CPUEntitlement": int(shares * entitlement_per_share * age),
    }


def memory_stat(stat: dict) -> dict:
    """Every MemoryStat key (0 where memory.stat has none) and TotalUsageTowardLimit: what
    reclaim cannot simply drop, total_rss + total_cache + total_swap - total_inactive_file
    (the cgroup v2 driver's usage_bytes, guardian#469)."""
    values = {key: stat.get(key, 0) for key in MEMORY_KEYS}
    toward = (values["total_rss"] + values["total_cache"] + values["total_swap"]
              - values["total_inactive_file"])
    return {**values, "TotalUsageTowardLimit": max(0, toward)}


def zero_metrics() -> dict:
    return {"MemoryStat": {**{key: 0 for key in MEMORY_KEYS}, "TotalUsageTowardLimit": 0},
            "CPUStat": {"Usage": 0, "User": 0, "System": 0},
            "DiskStat": {"TotalBytesUsed": 0, "TotalInodesUsed": 0, "ExclusiveBytesUsed": 0,
                         "ExclusiveInodesUsed": 0},
            "NetworkStat": None, "PidStat": {"Current": 0, "Max": 0}, "Age": 0,
            "CPUEntitlement": 0}


def _ticks_ns(ticks: int) -> int:
    """USER_HZ ticks in nanoseconds, Garden's unit (so to the tick's 10 ms, no finer)."""
    return ticks * NANOSECONDS // CLOCK_TICKS
