"""A container's links: the veth pair to the host, its addresses and route, and the ifb.

Kernel work goes through `kernel`; names come from `chains`. Chains are `network.py`'s.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from warden_iptables_net import chains, kernel

SUBNET_PREFIXLEN = 30  # network N, host end N+1, container end N+2 (facts §8.2)
NETNS_GONE_WAIT = 1.0  # seconds


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


def setup_links(container_id: str, netns_pid: int, network: IPv4Network, mtu: int,
                group: int = 0) -> dict:
    """Connect the netns of `netns_pid` to the host; return the record.

    The container end is created inside the netns (no move), down. The host end is born
    in device group `group` (the server's: its iptables rules match it) and hardened (rp_filter strict, IPv6 off, no RAs) while the pair has no carrier, so it
    never gets an IPv6 address; then the container end is addressed in the netns, with
    IPv6 off there too, lo up and a default route via the host end. The ifb (for shaping
    traffic out of the container) is left to the first limit_bandwidth: most containers are
    never shaped, and deleting a link costs an RCU grace period or two in the kernel.
    """
    chains.check_id(container_id)
    record = net_record(container_id, network, mtu)
    kernel.create_veth(record["host_iface"], record["container_iface"], netns_pid, mtu,
                       record["host_ip"], SUBNET_PREFIXLEN, group)
    kernel.harden_host_link(record["host_iface"])
    kernel.configure_in_netns(netns_pid, record["container_iface"], record["container_ip"],
                              SUBNET_PREFIXLEN, record["host_ip"])
    return record


def teardown_links(container_id: str, netns_pid: int | None = None) -> None:
    """Delete the ifb (if it was ever made) and the host veth if present (the container end
    goes with it).

    When `netns_pid`, the process that held the container's netns, is known to be dead, the
    kernel is already taking the netns down with the veth pair in it, in ~1 ms; deleting
    the veth ourselves would wait ~18 ms on RCU. So wait for that first, and delete the veth
    only if it is still there after NETNS_GONE_WAIT (something else holds the netns).
    """
    chains.check_id(container_id)
    kernel.delete_link(chains.ifb_iface(container_id))
    host = chains.host_iface(container_id)
    if netns_pid is not None and not kernel.process_alive(netns_pid):
        if kernel.wait_link_gone(host, NETNS_GONE_WAIT):
            return
    kernel.delete_link(host)
