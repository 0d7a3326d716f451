"""Garden's ContainerSpec (garden-api.md §6.1) as the core's CreateSpec, plus what the core
applies once the container exists (CreatePlan: limits, NetIn and NetOut rules), each checked
here so that a malformed spec is refused before anything is made.

What the core cannot do is refused with a text saying so: an image URI other than a rootfs
directory (`docker://`, `oci://`: this server fetches no images), a bind mount whose source
is inside the container, and a network that asks for "any address in a subnet" larger than
the /30 each container gets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from warden_framework.errors import WardenError
from warden_framework.specs import BindMount, CreateSpec

from .net_out_rules import core_rules
from .request_fields import array, boolean, obj, string, string_map, uint

NANOSECONDS = 1_000_000_000
CONTAINER_PREFIX = 30  # every container gets a /30 of the pool: .1 host, .2 container
SCOPE_TOTAL, SCOPE_EXCLUSIVE = 0, 1


@dataclass(frozen=True)
class Limits:
    """Garden's limits at create, as the core's limit_* calls take them (None: not asked)."""

    memory: int | None = None
    cpu_shares: int | None = None
    disk: dict = field(default_factory=dict)  # the core's limit_disk fields
    pids: int | None = None
    bandwidth: tuple[int, int] | None = None  # (rate, burst)


@dataclass(frozen=True)
class CreatePlan:
    spec: CreateSpec
    limits: Limits
    net_in: tuple[tuple[int, int], ...]  # (host port, container port); 0: the server picks
    net_out: tuple[dict, ...]  # the core's net_out rules


def create_plan(body: Any, default_grace: float | None) -> CreatePlan:
    """The plan for a Create body; `default_grace` (seconds, None: never) for grace_time 0."""
    body = obj(body, "ContainerSpec")
    grace_ns = uint(body.get("grace_time"), "grace_time")
    spec = CreateSpec(
        handle=string(body.get("handle"), "handle") or None,
        grace_time=grace_ns / NANOSECONDS if grace_ns else default_grace,
        network=network_request(string(body.get("network"), "network")),
        rootfs=rootfs_request(body),
        bind_mounts=bind_mounts(body.get("bind_mounts")),
        properties=string_map(body.get("properties"), "properties"),
        env=environment(body.get("env")),
        privileged=boolean(body.get("privileged"), "privileged"),
        request=body)
    net_out = tuple(rule for i, item in enumerate(array(body.get("netout_rules"), "netout_rules"))
                    for rule in core_rules(item, f"netout_rules[{i}]"))
    return CreatePlan(spec, limits(body.get("limits")), net_in(body.get("netin")), net_out)


def net_in(value: Any) -> tuple[tuple[int, int], ...]:
    rules = []
    for i, item in enumerate(array(value, "netin")):
        item = obj(item, f"netin[{i}]")
        rules.append((uint(item.get("host_port"), f"netin[{i}].host_port", 32),
                      uint(item.get("container_port"), f"netin[{i}].container_port", 32)))
    return tuple(rules)


def rootfs_request(body: dict) -> str | None:
    """The rootfs directory `image.uri` (or the older `rootfs`) names: an absolute path, or
    `raw:///path` as Guardian writes one; None for the server's default rootfs."""
    image = obj(body.get("image"), "image")
    uri = string(image.get("uri"), "image.uri") or string(body.get("rootfs"), "rootfs")
    if not uri:
        return None
    if uri.startswith("/"):
        return uri
    parts = urlsplit(uri)
    if parts.scheme == "raw":
        if parts.netloc or not parts.path.startswith("/"):
            raise WardenError(f"image {uri}: a raw URI names an absolute path: raw:///path")
        return parts.path
    scheme = f"{parts.scheme}://" if parts.scheme else "a relative path"
    raise WardenError(f"image {uri}: {scheme} is not supported: this server fetches no "
                      f"images; give a rootfs directory (an absolute path or raw:///path)")


def network_request(text: str) -> str | None:
    """The address the core's network pool takes (pools.NetworkPool.acquire_network: the /30
    around it) for Garden's `network`: a fixed container address (any prefix), or a /30."""
    if not text:
        return None
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError as exc:
        raise WardenError(f"network {text}: {exc}") from None
    block = ipaddress.IPv4Network(f"{iface.ip}/{CONTAINER_PREFIX}", strict=False)
    container_ip = block.network_address + 2
    subnet = "/" in text and iface.network.prefixlen <= CONTAINER_PREFIX
    if subnet and iface.ip == iface.network.network_address:
        if iface.network.prefixlen < CONTAINER_PREFIX:
            raise WardenError(f"network {text}: picking an address inside a subnet larger "
                              f"than /{CONTAINER_PREFIX} is not supported (the pool hands out "
                              f"/{CONTAINER_PREFIX}s): give the container's address or a "
                              f"/{CONTAINER_PREFIX}")
        return str(iface.ip)  # a /30: that one
    if iface.ip != container_ip:
        raise WardenError(f"network {text}: a container's address is the second of its "
                          f"/{CONTAINER_PREFIX} ({container_ip} in {block}), so {iface.ip} "
                          f"cannot be one")
    return str(iface.ip)


def bind_mounts(value: Any) -> tuple[BindMount, ...]:
    mounts = []
    for i, item in enumerate(array(value, "bind_mounts")):
        name = f"bind_mounts[{i}]"
        item = obj(item, name)
        src = string(item.get("src_path"), f"{name}.src_path")
        dst = string(item.get("dst_path"), f"{name}.dst_path")
        mode = uint(item.get("mode"), f"{name}.mode", 8)
        origin = uint(item.get("origin"), f"{name}.origin", 8)
        if mode not in (0, 1):
            raise WardenError(f"{name}.mode: {mode} is not 0 (ro) or 1 (rw)")
        if origin == 1:
            raise WardenError(f"{name}: origin 1 (a source inside the container) is not "
                              f"supported; only origin 0, a host path")
        if origin != 0:
            raise WardenError(f"{name}.origin: {origin} is not 0 (host) or 1 (container)")
        if not src or not dst:
            raise WardenError(f"{name}: src_path and dst_path are both needed")
        mounts.append(BindMount(src=src, dst=dst, mode="rw" if mode == 1 else "ro"))
    return tuple(mounts)


def environment(value: Any) -> tuple[str, ...]:
    env = tuple(string(item, f"env[{i}]") for i, item in enumerate(array(value, "env")))
    for i, item in enumerate(env):
        if "=" not in item or item.startswith("="):
            raise WardenError(f"env[{i}] {item!r}: KEY=VALUE is needed")
    return env


def limits(value: Any) -> Limits:
    """Garden's Limits; every zero (omitted) field is "not asked". CPU weight is the newer
    name of limit_in_shares: both are cpu shares, weight wins when both are given."""
    value = obj(value, "limits")
    memory = obj(value.get("memory_limits"), "limits.memory_limits")
    cpu = obj(value.get("cpu_limits"), "limits.cpu_limits")
    pid = obj(value.get("pid_limits"), "limits.pid_limits")
    bandwidth = obj(value.get("bandwidth_limits"), "limits.bandwidth_limits")
    rate = uint(bandwidth.get("rate"), "limits.bandwidth_limits.rate")
    burst = uint(bandwidth.get("burst"), "limits.bandwidth_limits.burst")
    shares = (uint(cpu.get("weight"), "limits.cpu_limits.weight")
              or uint(cpu.get("limit_in_shares"), "limits.cpu_limits.limit_in_shares"))
    return Limits(
        memory=uint(memory.get("limit_in_bytes"), "limits.memory_limits.limit_in_bytes") or None,
        cpu_shares=shares or None,
        disk=disk_limits(value.get("disk_limits")),
        pids=uint(pid.get("max"), "limits.pid_limits.max") or None,
        bandwidth=(rate, burst) if rate or burst else None)


def disk_limits(value: Any) -> dict:
    """The core's limit_disk fields. Both scopes are taken and enforced the same way: the
    quota counts what the container writes (exclusive), never the shared read-only image."""
    disk = obj(value, "limits.disk_limits")
    scope = uint(disk.get("scope"), "limits.disk_limits.scope", 8)
    if scope not in (SCOPE_TOTAL, SCOPE_EXCLUSIVE):
        raise WardenError(f"limits.disk_limits.scope: {scope} is not 0 (total) or 1 (exclusive)")
    fields = ("byte_soft", "byte_hard", "inode_soft", "inode_hard")
    values = {name: uint(disk.get(name), f"limits.disk_limits.{name}") for name in fields}
    return {name: number for name, number in values.items() if number}
