"""Network containment through the whole server, each test the attack a tenant tries:
IPv6 to the host, a forged source address, a routed neighbour reaching in, one container
reaching another. Traffic goes only between the host, its containers and a namespace the
test makes."""

from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
import threading
import time
from ipaddress import IPv4Network

import pytest

from warden_framework.client import Client
from warden_framework.testing.server import running_server
from warden_iptables_net import kernel

from .conftest import _missing, server_settings

CONNECT_TIMEOUT = 2.0


def run(client, handle, script, **kw):
    return client.run(handle=handle, script=script.encode(), **kw)


def container_id(client, handle) -> str:
    return os.path.basename(client.info(handle=handle).container_path.decode())


def netns_pid(cid: str) -> int:
    """A process in the container's network namespace, found as anyone on the host could:
    the one whose /proc/<pid>/net/dev lists the container's end of the veth."""
    wanted = f"w-{cid}-1:"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/net/dev") as f:
                if wanted in f.read():
                    return int(pid)
        except OSError:
            continue
    raise LookupError(f"no process in the network namespace of {cid}")


def sysctl(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def link_local(ifname: str) -> str:
    """The EUI-64 link-local address the kernel would give `ifname`."""
    mac = bytes.fromhex(sysctl(f"/sys/class/net/{ifname}/address").replace(":", ""))
    eui = bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    return socket.inet_ntop(socket.AF_INET6, b"\xfe\x80" + bytes(6) + eui)


def udp_packet(src: str, dst: str, dport: int, payload: bytes) -> bytes:
    """IPv4 + UDP with any source; the kernel fills in length, id and IP checksum."""
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64,
                         socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return header + udp


def connect_from(pid: int, address: str, port: int) -> str:
    """From the netns of `pid`: what a TCP server at address:port sends, or why nothing."""
    def attempt() -> str:
        with socket.socket() as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect((address, port))
                return sock.recv(100).decode()
            except TimeoutError:
                return "timeout"
            except OSError as error:
                return f"error: {error.strerror}"

    return kernel.in_netns(pid, attempt)


def wait_for_listener(address: str, port: int) -> None:
    """Until the container's listener answers the host (which may reach any container)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1) as sock:
                if sock.recv(100):
                    return
        except OSError:
            pass
        threading.Event().wait(0.05)
    raise TimeoutError(f"no listener at {address}:{port}")


@pytest.fixture
def host_access_client(tmp_path):
    """A server with allow_host_access, so that only anti-spoofing stands in a forger's way."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    settings = server_settings(tmp_path, drivers={"network": "iptables"},
                               network={"allow_host_access": True})
    with running_server(settings) as srv, \
            Client(srv.settings.server.unix_domain_path) as client:
        yield client


class Neighbour:
    """A network namespace routed through the host: a veth (not w-*) and a default route."""

    def __init__(self) -> None:
        self.link = f"xn{secrets.token_hex(3)}"
        net = IPv4Network(f"172.30.{secrets.randbelow(256)}.{secrets.randbelow(64) * 4}/30")
        self.host_ip, self.ip = str(net.network_address + 1), str(net.network_address + 2)
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", "1000"])
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{self.proc.pid}/ns/net") == own:
            if time.monotonic() > deadline:
                raise TimeoutError("unshare --net")
            threading.Event().wait(0.002)
        self.pid = self.proc.pid
        kernel.create_veth(f"{self.link}0", f"{self.link}1", self.pid, 1500, self.host_ip, 30)
        kernel.configure_in_netns(self.pid, f"{self.link}1", self.ip, 30, self.host_ip)

    def close(self) -> None:
        try:
            kernel.delete_link(f"{self.link}0")
        finally:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def neighbour(net_client):
    made = Neighbour()
    yield made
    made.close()


def test_unprivileged_job_cannot_reach_the_host_over_the_veths_ipv6_link_local(
        warden_net, net_client):
    h = net_client.create().handle
    info = net_client.info(handle=h)
    cid = container_id(net_client, h)
    host_end = f"w-{cid}-0"
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        listener.bind(("::", 0))  # the host's every address, IPv6 and IPv4
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        target = f"{link_local(host_end)}%w-{cid}-1"
        attack = (f"for i in 1 2 3; do (exec 3<>/dev/tcp/{target}/{port}) && echo connected;"
                  f" (exec 3<>/dev/tcp/{info.host_ip}/{port}) && echo connected; sleep 1; done")
        result = run(net_client, h, attack)
        assert b"connected" not in result.stdout, result.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert run(net_client, h, "cat /proc/net/if_inet6").stdout == b""  # no IPv6 address
    assert sysctl(f"/proc/sys/net/ipv6/conf/{host_end}/accept_ra") == "0"
    assert sysctl(f"/proc/sys/net/ipv6/conf/{host_end}/disable_ipv6") == "1"
    assert sysctl(f"/proc/sys/net/ipv4/conf/{host_end}/rp_filter") == "1"
    guard = f"-i w-+ -m comment --comment {warden_net.settings.server.name_prefix}-ipv6-guard"
    for hook in ("INPUT", "FORWARD"):
        rules = subprocess.run(["ip6tables-legacy", "-S", hook], check=True,
                               capture_output=True, text=True).stdout
        assert f"-A {hook} {guard} -j DROP" in rules


def test_container_root_with_a_forged_source_reaches_no_host_service(host_access_client):
    client = host_access_client
    h = client.create().handle
    info = client.info(handle=h)
    pid = netns_pid(container_id(client, h))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((info.host_ip, 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        run(client, h, f"echo -n job > /dev/udp/{info.host_ip}/{port}")
        data, (source, _) = sock.recvfrom(100)
        assert (data, source) == (b"job", info.container_ip)  # the host is open to it
        forged = "172.31.254.9"  # outside every pool

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
                for src, payload in ((forged, b"forged"), (info.container_ip, b"marker")):
                    raw.sendto(udp_packet(src, info.host_ip, port, payload), (info.host_ip, 0))

        kernel.in_netns(pid, send)  # what container root with CAP_NET_RAW can do
        got = []
        while b"marker" not in [data for data, _ in got]:
            data, (source, _) = sock.recvfrom(100)
            got.append((data, source))
        assert got == [(b"marker", info.container_ip)]


def test_routed_neighbour_reaches_a_container_port_only_through_net_in(net_client, neighbour):
    h = net_client.create().handle
    info = net_client.info(handle=h)
    job = net_client.spawn(handle=h,
                           script=b"while true; do echo hello | nc -l -p 8080; done").job_id
    wait_for_listener(info.container_ip, 8080)
    assert connect_from(neighbour.pid, info.container_ip, 8080) == "timeout"
    ports = net_client.net_in(handle=h, container_port=8080)
    assert connect_from(neighbour.pid, neighbour.host_ip, ports.host_port) == "hello\n"
    assert connect_from(neighbour.pid, info.container_ip, 8080) == "timeout"
    net_client.stop(handle=h, kill=True)
    net_client.link(handle=h, job_id=job)


def test_container_cannot_reach_another_container(net_client):
    a, b = net_client.create().handle, net_client.create().handle
    b_ip = net_client.info(handle=b).container_ip
    job = net_client.spawn(handle=b,
                           script=b"while true; do echo hello | nc -l -p 9000; done").job_id
    wait_for_listener(b_ip, 9000)
    result = run(net_client, a, f"nc -w 2 {b_ip} 9000 </dev/null", privileged=True)
    assert result.exit_status != 0 and b"hello" not in result.stdout
    net_client.stop(handle=b, kill=True)
    net_client.link(handle=b, job_id=job)
