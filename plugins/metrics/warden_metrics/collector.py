"""Gauges read from the serving runtime when Prometheus scrapes, never kept up to date: the
server's own state is the truth, and a scrape every few seconds costs less than bookkeeping
on every request.

collect() runs in the health page's thread while the event loop and the worker threads change
that state, so it only reads, and takes each dict's values with one list() (a single C call
that no other thread interrupts) before looking at them.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from warden_framework.container import ACTIVE, STOPPED

# States listed even when no container is in them, so a query never finds the series missing.
LISTED_STATES = (ACTIVE, STOPPED)


class RuntimeCollector(Collector):
    """Yields nothing until server_started handed it the Runtime."""

    def __init__(self) -> None:
        self.runtime: Any = None

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        if runtime is None:
            return
        containers = list(runtime.orchestrator.containers.values())
        yield containers_by_state(containers)
        yield jobs_running(containers)
        yield from pool_usage(runtime.orchestrator.pools)
        yield GaugeMetricFamily("warden_destroy_cleanups_pending",
                                "Destroys answered whose cleanup (network, cgroups, rootfs, disk, "
                                "pools, directory) has not finished",
                                value=runtime.cleanups.pending)
        yield GaugeMetricFamily("warden_depot_entries",
                                "Directories in the container depot: one per container, "
                                "including destroyed ones not cleaned up yet",
                                value=depot_entries(runtime.settings.depot))


def containers_by_state(containers: Iterable[Any]) -> GaugeMetricFamily:
    counts = collections.Counter(c.state for c in containers)
    family = GaugeMetricFamily("warden_containers", "Containers the server knows, by state",
                               labels=["state"])
    for state in sorted(set(LISTED_STATES) | set(counts)):
        family.add_metric([state], counts[state])
    return family


def jobs_running(containers: Iterable[Any]) -> GaugeMetricFamily:
    running = sum(1 for c in containers for job in list(c.jobs.values())
                  if job.exit_status is None)
    return GaugeMetricFamily("warden_jobs_running", "Jobs spawned and not ended, in all containers",
                             value=running)


def pool_usage(pools: Any) -> Iterator[GaugeMetricFamily]:
    """Size and entries in use of the network (/30s), port and uid pools. An entry released
    but still in its release delay counts as free."""
    by_name = {"network": pools.network, "port": pools.ports, "uid": pools.uids}
    size = GaugeMetricFamily("warden_pool_size", "Entries in each pool", labels=["pool"])
    in_use = GaugeMetricFamily("warden_pool_in_use", "Entries of each pool held by containers",
                               labels=["pool"])
    for name, pool in by_name.items():
        size.add_metric([name], pool.size)
        in_use.add_metric([name], pool.size - len(pool))
    yield size
    yield in_use


def depot_entries(depot: Path) -> int:
    with os.scandir(depot) as entries:
        return sum(1 for entry in entries if entry.is_dir(follow_symlinks=False))
