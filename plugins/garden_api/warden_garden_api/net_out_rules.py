"""Garden's NetOutRule (garden-api.md §6.7) as the core's net_out rules (the fields of
Warden's NetOutRequest, as dispatch.on_netout passes them): one core rule per network range
and port range of the Garden rule, so a rule with two networks and two port ranges is four.

The Garden shape is checked here, before any rule reaches the driver, so a NetOut, a
BulkNetOut or a create is refused whole for a malformed rule; what the driver then refuses
(Warden's validation, a kernel failure) is its error text.
"""

from __future__ import annotations

import ipaddress
from itertools import product
from typing import Any

from warden_framework.errors import WardenError

from .request_fields import array, boolean, obj, uint

PROTOCOLS = {0: "all", 1: "tcp", 2: "udp", 3: "icmp"}  # Garden's Protocol values
ALL_NETWORKS = "0.0.0.0/0"  # Garden: no networks means every destination


def core_rules(rule: Any, name: str = "rule") -> list[dict]:
    """The core rules that together allow what the Garden `rule` allows."""
    rule = obj(rule, name)
    number = uint(rule.get("protocol"), f"{name}.protocol", 8)
    if number not in PROTOCOLS:
        raise WardenError(f"{name}.protocol: {number} is not one of 0 (all), 1 (tcp), "
                          f"2 (udp), 3 (icmp)")
    protocol = PROTOCOLS[number]
    networks = [_network(item, f"{name}.networks[{i}]")
                for i, item in enumerate(array(rule.get("networks"), f"{name}.networks"))]
    ports = [_ports(item, f"{name}.ports[{i}]")
             for i, item in enumerate(array(rule.get("ports"), f"{name}.ports"))]
    if ports and protocol not in ("tcp", "udp"):
        raise WardenError(f"{name}: ports need protocol tcp (1) or udp (2), not {protocol}")
    icmp_type, icmp_code = _icmps(rule.get("icmps"), f"{name}.icmps")
    log = boolean(rule.get("log"), f"{name}.log")
    return [{"network": network, "port": None, "port_range": port_range, "protocol": protocol,
             "icmp_type": icmp_type, "icmp_code": icmp_code, "log": log}
            for network, port_range in product(networks or [ALL_NETWORKS], ports or [None])]


def _network(item: Any, name: str) -> str:
    """`{start, end}` as a CIDR when the range is exactly one, else `start-end`."""
    item = obj(item, name)
    try:
        start = ipaddress.IPv4Address(item.get("start") or "")
        end = ipaddress.IPv4Address(item.get("end") or item.get("start") or "")
    except ValueError as exc:
        raise WardenError(f"{name}: {exc}") from None
    if end < start:
        raise WardenError(f"{name}: end {end} is before start {start}")
    blocks = list(ipaddress.summarize_address_range(start, end))
    return str(blocks[0]) if len(blocks) == 1 else f"{start}-{end}"


def _ports(item: Any, name: str) -> str:
    """`{start, end}` as the core's port_range text ("80" or "8000:8080")."""
    item = obj(item, name)
    start = uint(item.get("start"), f"{name}.start", 16)
    end = uint(item.get("end"), f"{name}.end", 16) or start
    if start == 0:
        raise WardenError(f"{name}: start must be a port, 1..65535")
    if end < start:
        raise WardenError(f"{name}: end {end} is before start {start}")
    return str(start) if start == end else f"{start}:{end}"


def _icmps(value: Any, name: str) -> tuple[int | None, int | None]:
    """(type, code); no icmps is every type, and a code absent (not 0) is every code."""
    if value is None:
        return None, None
    icmps = obj(value, name)
    icmp_type = uint(icmps.get("type"), f"{name}.type", 8)
    code = icmps.get("code")
    return icmp_type, None if code is None else uint(code, f"{name}.code", 8)
