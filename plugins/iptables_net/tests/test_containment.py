"""Integration: the attacks a container's root can try on the network, each on the real
kernel, and what stops it (IPv6 off and guarded, anti-spoofing, the host block by veth,
the ingress chain). Traffic goes only between the host and namespaces the tests make."""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import subprocess
import time
from ipaddress import IPv4Network

import pytest

from warden_iptables_net import chains, kernel, network

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, veths, iptables"),
]

SHORT_TIMEOUT = 1.0  # a dropped SYN is never answered: how long to wait for nothing
ATTACK_TIME = 3.0  # an attacker may wait out IPv6 duplicate address detection (~1 s)


def sysctl(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def link_local(ifname: str) -> str:
    """The EUI-64 link-local address the kernel would give `ifname` (what an attacker
    computes from the MAC it sees in its neighbour table)."""
    mac = bytes.fromhex(sysctl(f"/sys/class/net/{ifname}/address").replace(":", ""))
    eui = bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    return socket.inet_ntop(socket.AF_INET6, b"\xfe\x80" + bytes(6) + eui)


def tcp6_attempt(pid: int, address: str, scope: str, port: int) -> str:
    """From the netns of `pid`: connect over IPv6 to address%scope; 'connected' or why not."""
    def attempt() -> str:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.settimeout(SHORT_TIMEOUT)
            try:
                sock.connect((address, port, 0, socket.if_nametoindex(scope)))
                return "connected"
            except TimeoutError:
                return "timeout"
            except OSError as error:
                return f"error: {error.strerror}"

    return kernel.in_netns(pid, attempt)


def udp_packet(src: str, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4 UDP datagram with any source: the kernel fills in length, id and checksum
    (raw(7), IP_HDRINCL); a UDP checksum of 0 means none."""
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64,
                         socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return header + udp


def send_raw(pid: int, packets: list[tuple[bytes, str]]) -> None:
    """Send hand-made IPv4 packets from the netns of `pid`, as root with CAP_NET_RAW can."""
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
            for packet, dst in packets:
                sock.sendto(packet, (dst, 0))

    kernel.in_netns(pid, send)


def udp_listener(pid: int | None, address: str) -> socket.socket:
    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        sock.settimeout(5.0)
        return sock

    return bind() if pid is None else kernel.in_netns(pid, bind)


def received_until(sock: socket.socket, last: bytes) -> list[tuple[bytes, str]]:
    """(payload, source address) of every datagram up to and including `last`."""
    got: list[tuple[bytes, str]] = []
    while not got or got[-1][0] != last:
        data, (source, _) = sock.recvfrom(2048)
        got.append((data, source))
    return got


def forge_and_send(box, forged_src: str, dst: str, port: int) -> None:
    """From `box`: the forged datagram first, then a genuine one on the same path, the
    marker after which the forged one would have arrived."""
    send_raw(box.pid, [(udp_packet(forged_src, dst, port, b"forged"), dst),
                          (udp_packet(box.ip, dst, port, b"genuine"), dst)])


def guard_hits() -> int:
    """Packets counted by every server's IPv6 guard in INPUT (any prefix on this host)."""
    out = subprocess.run(["ip6tables-legacy", "-v", "-S", "INPUT"], check=True,
                         capture_output=True, text=True).stdout
    counters = [re.search(r" -c (\d+) \d+", line) for line in out.splitlines()
                if "-ipv6-guard" in line]
    return sum(int(found.group(1)) for found in counters if found)


# ------------------------------------------------------------------------------ IPv6

def test_container_and_host_end_have_no_ipv6_and_the_host_end_takes_no_ras(
        host, containers, view) -> None:
    box = containers()
    iface = chains.host_iface(box.id)
    assert view.in_ns(box.pid, "cat", "/proc/net/if_inet6") == ""
    assert view.run("ip", "-6", "-o", "addr", "show", "dev", iface) == ""
    assert sysctl(f"/proc/sys/net/ipv6/conf/{iface}/accept_ra") == "0"
    assert sysctl(f"/proc/sys/net/ipv6/conf/{iface}/disable_ipv6") == "1"
    assert sysctl(f"/proc/sys/net/ipv4/conf/{iface}/rp_filter") == "1"
    for name in ("all", "default", "lo", chains.container_iface(box.id)):
        assert view.in_ns(box.pid, "cat",
                          f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").strip() == "1"


def test_container_cannot_reach_a_host_listener_on_the_veths_link_local_address(
        host, containers) -> None:
    box = containers()
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        listener.bind(("::", 0))  # every address of the host, IPv4 and IPv6
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        target = link_local(chains.host_iface(box.id))
        deadline = time.monotonic() + ATTACK_TIME
        results = set()
        while time.monotonic() < deadline and "connected" not in results:
            results.add(tcp6_attempt(box.pid, target, chains.container_iface(box.id), port))
            time.sleep(0.1)  # each failure may be immediate (no route): do not spin
        assert "connected" not in results, results
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_ipv6_guard_drops_ipv6_from_a_container_veth_that_has_it_again(
        host, containers, view) -> None:
    """If IPv6 came back on both ends (container root re-enabling it in its netns, and a
    host end whose sysctls were reset), the host still takes nothing from it."""
    box = containers()
    host_end, inner = chains.host_iface(box.id), chains.container_iface(box.id)
    for where, ifname, address in ((None, host_end, "fe80::1"), (box.pid, inner, "fe80::2")):
        prefix = [] if where is None else ["nsenter", f"--net=/proc/{where}/ns/net"]
        view.run(*prefix, "sysctl", "-q", f"net.ipv6.conf.{ifname}.disable_ipv6=0")
        view.run(*prefix, "ip", "-6", "addr", "add", f"{address}/64", "dev", ifname, "nodad")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        listener.bind(("::", 0))
        listener.listen()
        before = guard_hits()
        assert tcp6_attempt(box.pid, "fe80::1", inner, listener.getsockname()[1]) == "timeout"
        assert guard_hits() > before


# ---------------------------------------------------------------------- anti-spoofing

def test_forged_source_udp_from_a_container_does_not_reach_the_host(
        host, containers) -> None:
    box = containers()
    try:
        host.setup(allow_host_access=True)  # only anti-spoofing stands in the way
        with udp_listener(None, box.host_ip) as sock:
            port = sock.getsockname()[1]
            outside_pool = str(host.spare.network_address + 9)
            forge_and_send(box, outside_pool, box.host_ip, port)
            assert received_until(sock, b"genuine") == [(b"genuine", box.ip)]
    finally:
        host.setup()


def test_forged_source_udp_does_not_leave_for_an_allowed_network(host, containers) -> None:
    first, second = containers(), containers()
    try:
        host.setup(allow_networks=[f"{host.outside_ip}/32"])
        with udp_listener(host.outside_pid, host.outside_ip) as sock:
            port = sock.getsockname()[1]
            for forged in (str(host.spare.network_address + 9), second.ip):
                forge_and_send(first, forged, host.outside_ip, port)
                assert received_until(sock, b"genuine") == [(b"genuine", host.outside_host_ip)]
    finally:
        host.setup()


@pytest.mark.parametrize("forged", ["network", "host end", "broadcast", "neighbour",
                                    "outside the pool"])
def test_no_forged_source_reaches_the_host_with_rp_filter_loose(host, containers,
                                                                forged) -> None:
    """The anti-spoofing rules stand alone: the host lets the containers in
    (allow_host_access) and the kernel's reverse-path filter is loose, on the veth and for
    all. What is left to forge: the other addresses of the container's own /30 (its
    network, the host's end, its broadcast), a neighbour's address, one outside the pool."""
    box, neighbour = containers(), containers()
    net = IPv4Network(box.record["network"])
    source = {"network": net.network_address, "host end": net.network_address + 1,
              "broadcast": net.broadcast_address, "neighbour": neighbour.ip,
              "outside the pool": host.spare.network_address + 9}[forged]
    iface = chains.host_iface(box.id)
    sysctls = [f"{kernel.IPV4_CONF}/{name}/rp_filter" for name in ("all", iface)]
    before = [sysctl(path) for path in sysctls]
    try:
        for path in sysctls:
            with open(path, "w") as f:
                f.write("2")
        host.setup(allow_host_access=True)
        with udp_listener(None, box.host_ip) as sock:
            forge_and_send(box, str(source), box.host_ip, sock.getsockname()[1])
            assert received_until(sock, b"genuine") == [(b"genuine", box.ip)]
    finally:
        for path, value in zip(sysctls, before):
            with open(path, "w") as f:
                f.write(value)
        host.setup()


def test_a_container_veth_is_in_its_servers_device_group_and_nothing_names_it(
        host, containers, view) -> None:
    """The host chains match the group of the host end, which only the host can change;
    a container without rules of its own has no rule naming its veth or address."""
    box = containers()
    assert kernel.link_group(chains.host_iface(box.id)) == chains.device_group(host.prefix)
    assert view.rules_with(box.id) == [] and view.rules_with(f"{box.ip}/") == []
    assert view.in_ns(box.pid, "ip", "-o", "link", "show", "dev",
                      chains.container_iface(box.id)).count("group default") == 1


# ------------------------------------------------------------------ host block, ingress

def test_host_block_matches_the_veth_not_the_source(host, view) -> None:
    assert view.rules_with(f"-A INPUT -i w-+ -j {chains.input_chain(host.prefix)}")
    group = hex(chains.device_group(host.prefix))
    assert view.rules_with(f"-A {chains.input_chain(host.prefix)} -m devgroup --src-group "
                           f"{group} -g {chains.host_chain(host.prefix)}")
    blocks = view.rules_with(chains.host_block_tag(host.prefix))
    assert len(blocks) == 1 and " -s " not in blocks[0]


def test_host_block_refuses_a_forged_source_with_the_other_layers_gone(
        host, containers) -> None:
    """The block goes by veth: with the anti-spoofing rules deleted and rp_filter off, a
    container still cannot reach the host from an address outside the pool (a source-range
    block let exactly that through)."""
    box = containers()
    iface = chains.host_iface(box.id)
    with kernel.iptables() as ipt:
        ipt.flush(chains.RAW, chains.antispoof_chain(host.prefix))
    with open(f"/proc/sys/net/ipv4/conf/{iface}/rp_filter", "w") as f:
        f.write("0")
    try:
        host.setup(allow_networks=[f"{host.outside_ip}/32"])
        forged = str(host.spare.network_address + 9)
        with udp_listener(None, box.host_ip) as to_host, \
                udp_listener(host.outside_pid, host.outside_ip) as outside:
            send_raw(box.pid, [
                (udp_packet(forged, box.host_ip, to_host.getsockname()[1], b"forged"),
                 box.host_ip),
                (udp_packet(box.ip, host.outside_ip, outside.getsockname()[1], b"marker"),
                 host.outside_ip)])
            assert received_until(outside, b"marker") == [(b"marker", host.outside_host_ip)]
            to_host.setblocking(False)  # the marker came in behind it on the same veth
            with pytest.raises(BlockingIOError):
                to_host.recvfrom(100)
    finally:
        host.setup()


def test_routed_neighbour_cannot_connect_to_a_container_port_without_net_in(
        host, containers, servers, connect, view) -> None:
    box = containers()
    server = servers(box.pid, "0.0.0.0", token="inside")
    assert connect(None, box.ip, server.port) == "inside"  # the host itself may
    assert connect(host.outside_pid, box.ip, server.port) == "timeout"  # dropped
    ingress = chains.ingress_chain(host.prefix)
    assert view.rules_with(f"-A FORWARD -o w-+ -j {ingress}")
    assert view.rules_with(f"-A {ingress} -d {host.pool} -j DROP")


def test_routed_neighbour_reaches_a_container_only_through_its_net_in_port(
        host, containers, servers, connect) -> None:
    box = containers()
    server = servers(box.pid, "0.0.0.0", token="inside")
    other = servers(box.pid, "0.0.0.0", token="other")
    host_port = random.randrange(40000, 50000)
    network.net_in(host.prefix, box.id, box.ip, host_port, server.port)
    assert connect(host.outside_pid, host.outside_host_ip, host_port) == "inside"
    assert connect(host.outside_pid, box.ip, server.port) != "inside"
    assert connect(host.outside_pid, box.ip, other.port) != "other"


def test_container_cannot_reach_another_container(host, containers, servers,
                                                  connect) -> None:
    first, second = containers(), containers()
    server = servers(first.pid, "0.0.0.0", token="first")
    assert connect(second.pid, first.ip, server.port) != "first"
    assert connect(second.pid, first.host_ip, server.port) != "first"
