"""The container model: identity, state machine, reserved resources, step records, jobs, events.

Kernel object names derive from `container.id` (11 base-32 characters, facts §4.2), never from
the client's handle, which may be any bytes.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WardenError
from .idmap import IdMap

if TYPE_CHECKING:
    from .jobs import Job

BORN, ACTIVE, STOPPED, DESTROYED = "born", "active", "stopped", "destroyed"
ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
ID_LENGTH = 11
# Container events (facts §4.7, §6.4): the kernel killed a process for memory, and a job was
# killed for passing job_output_limit.
OUT_OF_MEMORY = "out of memory"
OUTPUT_EXCEEDED = "command exceeded maximum output"


class IdGenerator:
    """Container ids: a counter seeded with the time in microseconds, 11 base-32 digits."""

    def __init__(self) -> None:
        self._next = int(time.time() * 1_000_000)
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            value, self._next = self._next, self._next + 1
        return "".join(ID_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(ID_LENGTH)))


def handle_to_wire(handle: str) -> bytes:
    return handle.encode("utf-8", "surrogateescape")


def handle_from_wire(raw: bytes | str) -> str:
    """Handles are arbitrary bytes on the wire; keep them exact through surrogateescape."""
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", "surrogateescape")


def check_state(container: Container, *allowed: str) -> None:
    """Raise Warden's exact state error unless the container is in one of `allowed`."""
    if container.state not in allowed:
        raise WardenError(f"Container state must be one of '{', '.join(allowed)}', "
                          f"current state is '{container.state}'")


@dataclass
class Container:
    id: str
    handle: str
    path: Path
    network: ipaddress.IPv4Network | None = None
    uid: int | None = None
    # The host range of the container's user namespace; None without one (namespaces off, or
    # a container made before they existed). vcap is `uid` inside, root is 0 inside.
    id_map: IdMap | None = None
    grace_time: float | None = None
    state: str = BORN
    events: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)
    rootfs_request: str | None = None
    binds: list[dict] = field(default_factory=list)
    net_in_rules: list[list[int]] = field(default_factory=list)
    net_out_rules: list[dict] = field(default_factory=list)
    memory_limit: int | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None  # Garden's pid_limits.max; None: server.container_pids_limit
    jobs: dict[int, Job] = field(default_factory=dict)
    destroying: bool = False
    # Garden's: labels kept with the container, KEY=VALUE pairs every job gets, and when it
    # was made (its Metrics' Age).
    properties: dict[str, str] = field(default_factory=dict)
    env: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    # Info taken just before destroy, answered to links that complete afterwards (facts §4.6).
    obituary: Any = field(default=None, repr=False, compare=False)

    # paths inside the container directory (DESIGN: "A container on disk")
    @property
    def rootfs_dir(self) -> Path:
        return self.path / "rootfs"

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    @property
    def jobs_dir(self) -> Path:
        return self.path / "jobs"

    @property
    def snapshot_path(self) -> Path:
        return self.path / "snapshot.json"

    @property
    def host_ip(self) -> str | None:
        return str(self.network.network_address + 1) if self.network else None

    @property
    def container_ip(self) -> str | None:
        return str(self.network.network_address + 2) if self.network else None

    def host_id(self, inside: int) -> int:
        """The host uid/gid of container id `inside` (the same without a user namespace)."""
        return self.id_map.to_host(inside) if self.id_map else inside

    def add_event(self, event: str) -> None:
        if event not in self.events:
            self.events.append(event)

    def running_job_ids(self) -> list[int]:
        return sorted(j.id for j in self.jobs.values() if j.exit_status is None)

    def to_dict(self) -> dict:
        """The snapshot form; jobs are added by the orchestrator."""
        return {
            "id": self.id, "handle": self.handle, "state": self.state, "events": self.events,
            "grace_time": self.grace_time,
            "resources": {
                "network": str(self.network.network_address) if self.network else None,
                "uid": self.uid, "ports": self.ports, "net_in": self.net_in_rules,
                "net_out": self.net_out_rules, "limit_memory": self.memory_limit,
                "limit_cpu": self.cpu_shares, "limit_pids": self.pids_limit,
                "id_map": self.id_map.to_list() if self.id_map else None,
            },
            "rootfs": self.rootfs_request, "bind_mounts": self.binds, "records": self.records,
            "destroying": self.destroying, "properties": self.properties, "env": self.env,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict, path: Path) -> Container:
        res = data.get("resources", {})
        net = res.get("network")
        return cls(
            id=data["id"], handle=data["handle"], path=path,
            network=ipaddress.IPv4Network(f"{net}/30") if net else None,
            uid=res.get("uid"), id_map=IdMap.from_list(res.get("id_map")),
            grace_time=data.get("grace_time"), state=data["state"],
            events=list(data.get("events", [])), ports=list(res.get("ports", [])),
            records=dict(data.get("records", {})), rootfs_request=data.get("rootfs"),
            binds=list(data.get("bind_mounts", [])), net_in_rules=list(res.get("net_in", [])),
            net_out_rules=list(res.get("net_out", [])), memory_limit=res.get("limit_memory"),
            cpu_shares=res.get("limit_cpu"), pids_limit=res.get("limit_pids"), properties=dict(data.get("properties") or {}),
            env=list(data.get("env") or []), created_at=data.get("created_at") or time.time(),
        )
