"""Fixtures for the iptables_net tests: network namespaces held by `sleep` processes
(stand-ins for containers and for the outside world), TCP servers and clients inside them,
the host set up under a unique prefix, and views of the kernel's state.

Tests import nothing from here (pytest runs with --import-mode=importlib): every helper is
a fixture.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network

import pytest

from warden_iptables_net import kernel, network, veth

ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
CONNECT_TIMEOUT = 3.0


def _unique_id() -> str:
    """A container id shaped like Warden's (11 of [0-9a-v]), random so runs never collide."""
    return "".join(random.choice(ID_ALPHABET) for _ in range(11))


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.002)


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


# ----------------------------------------------------------------------- namespaces

class Namespaces:
    """Network namespaces, each held by a `sleep` process made with `unshare --net`."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def make(self) -> int:
        proc = subprocess.Popen(["unshare", "--net", "sleep", "1000"])
        self._procs.append(proc)
        own = os.readlink("/proc/self/ns/net")
        _wait_for(lambda: _netns_of(proc.pid) not in (None, own), "unshare --net")
        return proc.pid

    def close(self) -> None:
        for proc in self._procs:
            proc.kill()
            proc.wait()


def _netns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


@pytest.fixture
def netns() -> Iterator[Callable[[], int]]:
    """Factory of network namespaces (returns the holding pid); all killed after the test."""
    spaces = Namespaces()
    yield spaces.make
    spaces.close()


# ------------------------------------------------------------- TCP in namespaces

def _in_ns(pid: int | None, work: Callable[[], object]) -> object:
    return work() if pid is None else kernel.in_netns(pid, work)


class Server:
    """A TCP server in a namespace that answers every connection with its token."""

    def __init__(self, pid: int | None, address: str, port: int, token: str) -> None:
        self.token = token
        self._sock = _in_ns(pid, lambda: _listener(address, port))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # shut down
            with conn:
                conn.sendall(self.token.encode())

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)


def _listener(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(16)
    return sock


def _connect(pid: int | None, address: str, port: int) -> str:
    """The token of the server reached from the namespace of `pid` (None: the host),
    or `refused` / `timeout` / `error: ...`."""
    def attempt() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect((address, port))
                return sock.recv(100).decode()
            except ConnectionRefusedError:
                return "refused"
            except TimeoutError:
                return "timeout"
            except OSError as error:
                return f"error: {error.strerror}"

    return str(_in_ns(pid, attempt))


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """Factory: servers(pid or None, address, port=0, token=...) -> Server; closed after."""
    made: list[Server] = []

    def start(pid: int | None, address: str, port: int = 0, token: str = "") -> Server:
        server = Server(pid, address, port, token or f"server-{len(made)}")
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()


@pytest.fixture
def connect() -> Callable[[int | None, str, int], str]:
    return _connect


# ------------------------------------------------------------------ kernel views

class KernelView:
    """What the kernel holds, through the commands an operator would use."""

    run = staticmethod(_run)
    wait_for = staticmethod(_wait_for)
    unique_id = staticmethod(_unique_id)

    @staticmethod
    def iptables() -> list[str]:
        """`iptables-legacy -S` of filter, nat and raw and `ip6tables-legacy -S` of filter,
        each line tagged with its table."""
        return ([f"filter {line}" for line in _run("iptables-legacy", "-S").splitlines()]
                + [f"{table} {line}" for table in ("nat", "raw")
                   for line in _run("iptables-legacy", "-t", table, "-S").splitlines()]
                + [f"filter6 {line}" for line in _run("ip6tables-legacy", "-S").splitlines()])

    def rules_with(self, text: str) -> list[str]:
        return [line for line in self.iptables() if text in line]

    @staticmethod
    def links_with(text: str) -> list[str]:
        return [name for name in kernel.link_names() if text in name]

    @staticmethod
    def in_ns(pid: int, *argv: str) -> str:
        return _run("nsenter", f"--net=/proc/{pid}/ns/net", *argv)


@pytest.fixture
def view() -> KernelView:
    return KernelView()


# ------------------------------------------------------------------ host and pool

@dataclass
class Host:
    """The host as set up for one test module: prefix, pool, and the outside namespace."""

    prefix: str
    pool: IPv4Network
    outside_pid: int
    outside_host_ip: str  # the host's end of the link to "outside"
    outside_ip: str  # the outside namespace's address
    spare: IPv4Network  # in no pool, for a test that needs a second server
    subnets: Iterator[IPv4Network]

    def setup(self, allow_networks: list[str] | None = None,
              allow_host_access: bool = False) -> None:
        network.setup_host(self.prefix, self.pool, allow_networks or [], [],
                           allow_host_access)


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    """setup_host under a unique prefix, with an "outside" namespace routed from the host.

    ip_forward is put back as it was found.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root: creates namespaces, veths and iptables chains")
    prefix = f"t{secrets.token_hex(3)}"
    base = IPv4Network(f"10.{random.randrange(200, 250)}.{random.randrange(0, 256, 2)}.0/23")
    pool, rest = base.subnets(prefixlen_diff=1)
    outside, spare = rest.subnets(prefixlen_diff=1)
    outside_host_ip, outside_ip = veth.addresses(next(outside.subnets(new_prefix=30)))
    link = f"xo{secrets.token_hex(3)}"  # not w-*: it is no container's
    with open(kernel.IP_FORWARD) as f:
        forwarding = f.read()
    spaces = Namespaces()
    try:
        pid = spaces.make()
        kernel.create_veth(f"{link}0", f"{link}1", pid, 1500, outside_host_ip, 30)
        kernel.configure_in_netns(pid, f"{link}1", outside_ip, 30, outside_host_ip)
        state = Host(prefix, pool, pid, outside_host_ip, outside_ip, spare,
                     pool.subnets(new_prefix=30))
        state.setup()
        yield state
    finally:
        network.teardown_host(prefix)
        kernel.delete_link(f"{link}0")
        spaces.close()
        with open(kernel.IP_FORWARD, "w") as f:
            f.write(forwarding)


@dataclass
class Container:
    id: str
    pid: int
    record: dict

    @property
    def ip(self) -> str:
        return self.record["container_ip"]

    @property
    def host_ip(self) -> str:
        return self.record["host_ip"]


@pytest.fixture
def containers(host: Host) -> Iterator[Callable[..., Container]]:
    """Factory of set-up containers (namespace, links, chains), torn down after the test."""
    spaces = Namespaces()
    made: list[str] = []

    def make(mtu: int = 1500) -> Container:
        pid = spaces.make()
        cid = _unique_id()
        made.append(cid)
        record = network.setup_container(host.prefix, cid, pid, next(host.subnets), mtu)
        return Container(cid, pid, record)

    yield make
    try:
        for cid in made:
            network.teardown_container(host.prefix, cid)
    finally:
        spaces.close()
