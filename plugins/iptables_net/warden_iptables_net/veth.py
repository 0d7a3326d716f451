"""A container's links: the veth pair to the host, its addresses and route, and the ifb.

Kernel work goes through `kernel`; names come from `chains`. Chains are `network.py`'s.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from warden_iptables_net import chains, kernel

SUBNET_PREFIXLEN = 30  # network N, host end N+1, container end N+2 (facts §8.2)


def addresses(network: IPv4Network) -> tuple[str, str]:
    """(host_ip, container_ip) of a container's /30."""
    if network.prefixlen != SUBNET_PREFIXLEN:
        raise ValueError(f"container network must be a /30, got {network}")
    return str(network.network_address + 1), str(network.network_address + 2)


def net_record(container_id: str, network: IPv4Network, mtu: int) -> dict:
    """What setup_links made, as JSON-able data (the NetRecord)."""
    host_ip, container_ip = addresses(network)
    return {
        "container_id": container_id,
        "network": str(network),
        "netmask": str(network.netmask),
        "host_ip": host_ip,
        "container_ip": container_ip,
        "host_iface": chains.host_iface(container_id),
        "container_iface": chains.container_iface(container_id),
        "ifb_iface": chains.ifb_iface(container_id),
        "mtu": mtu,
    }


def setup_links(container_id: str, netns_pid: int, network: IPv4Network, mtu: int) -> dict:
    """Connect the netns of `netns_pid` to the host; return the record.

    The container end is created inside the netns (no move), then addressed there with lo
    up and a default route via the host end. The ifb (for shaping traffic out of the
    container) is created up with the same MTU.
    """
    chains.check_id(container_id)
    record = net_record(container_id, network, mtu)
    kernel.create_veth(record["host_iface"], record["container_iface"], netns_pid, mtu,
                       record["host_ip"], SUBNET_PREFIXLEN)
    kernel.configure_in_netns(netns_pid, record["container_iface"], record["container_ip"],
                              SUBNET_PREFIXLEN, record["host_ip"])
    kernel.ensure_ifb(record["ifb_iface"], mtu)
    return record


def teardown_links(container_id: str) -> None:
    """Delete the ifb and the host veth if present (the container end goes with it)."""
    chains.check_id(container_id)
    kernel.delete_link(chains.ifb_iface(container_id))
    kernel.delete_link(chains.host_iface(container_id))
