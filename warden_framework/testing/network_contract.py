"""The network contract: what every network driver must do for a container's traffic, whatever
its mechanism, as a pytest class a plugin subclasses (STYLE §6.7; rootfs: contract.py,
limits: limits_contract.py).

A plugin's tests/test_network_contract.py:

    class TestIptablesNetworkContract(NetworkContract):
        driver_class = IptablesDriver
        kernel_module = kernel  # optional: its kernel.py, for the recording check

Every hook goes through a real pluggy PluginManager (plugins.build_plugin_manager), by keyword,
as the server calls it: a misnamed parameter or an unmarked hook fails. A process in a new
network namespace (`unshare --net sleep infinity`) stands in for the container's init;
listeners and clients run inside it through `nsenter --net`. Traffic flows only between the
host and namespaces the test made. The host is set up once per class under a random prefix
and pool, and torn down after; the kit's leak inventory must then be as it was. One test runs
without root: teardown_net(record=None) on the plugin's kernel.py recorded (recording.py).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from ..config import Settings, settings_from_dict
from ..container import Container, IdGenerator
from ..errors import DriverError, WardenError
from ..plugins import build_plugin_manager
from . import leaks
from .contract import reloaded
from .recording import RecordingModule
from .driver_contract import DriverContract

CONTAINER_PORT = 8080
OTHER_PORT = 8081
HOST_PORTS = range(50000, 60000)  # below Warden's port pool (61000..65000), above other tests'
REACH_TIMEOUT = 3.0  # seconds; a connection that works answers at once
BLOCKED_TIMEOUT = 1.0  # seconds to wait for the answer a dropped SYN never gets
NO_LIMIT = 0xFFFFFFFF  # bandwidth_stat without shaping (facts §5.1)
TCP, UDP, ICMP, ALL = range(4)  # NetOutRequest.Protocol
NET_OUT_FIELDS = ("network", "port", "port_range", "protocol", "icmp_type", "icmp_code", "log")
FORGED_OUTSIDE = "198.51.100.7"  # TEST-NET-2: in no pool, routed nowhere
ROUTE_PROBE = "198.51.100.1"  # only looked up in the routing table, never sent to

_PY = [sys.executable, "-I", "-S", "-c"]
# argv: address port token. Prints the bound port, then answers each connection with token.
_LISTEN = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[3].encode())
    c.close()
"""
# argv: address port timeout. Prints what the server sent, or why there was nothing.
_CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print(s.recv(100).decode() or "closed")
except ConnectionRefusedError:
    print("refused")
except (TimeoutError, socket.timeout):
    print("timeout")
except OSError as e:
    print("error", e.strerror)
"""
# argv: dst port src:payload...  Sends hand-made UDP datagrams with any source (IP_HDRINCL;
# the kernel fills in length, id and header checksum; a UDP checksum of 0 means none).
_SEND_UDP = """
import socket, struct, sys
dst, port = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
    for item in sys.argv[3:]:
        src, payload = item.split(":")
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload.encode()
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP,
                         0, socket.inet_aton(src), socket.inet_aton(dst))
        s.sendto(ip + udp, (dst, 0))
"""


@dataclass
class NetworkHost:
    """The host as the class set it up: one server (prefix, pool, driver, hooks)."""

    prefix: str
    pool: IPv4Network
    settings: Settings
    hooks: Any  # pm.hook of a PluginManager holding only the driver
    new_id: Callable[[], str]
    subnets: Iterator[IPv4Network]
    ids: list[str] = field(default_factory=list)  # of every container made, for the leak check


class Boxes:
    """Containers of one test: an init stand-in each (a process in a new network namespace),
    listeners inside them or on the host, and cleanup that fails the test for leftovers."""

    def __init__(self, host: NetworkHost, path: Path,
                 objects_of: Callable[[Container], dict[str, set[str]]]) -> None:
        self.host = host
        self.path = path
        self.objects_of = objects_of
        self.made: list[Container] = []
        self._inits: dict[int, subprocess.Popen] = {}
        self._listeners: dict[int | None, list[subprocess.Popen]] = {}

    # ---- containers ----------------------------------------------------------------------

    def make(self, pid: int | None = None) -> Container:
        """A container as setup_net finds it: id, /30, and an init (by default a new process
        holding a new netns)."""
        cid = self.host.new_id()
        self.host.ids.append(cid)
        c = Container(id=cid, handle=f"net-contract-{cid}", path=self.path / cid,
                      network=next(self.host.subnets),
                      records={"exec": {"pid": pid or self._start_init()}})
        c.path.mkdir(parents=True)
        self.made.append(c)
        return c

    def setup(self) -> Container:
        """A container after setup_net, its record where the orchestrator keeps it."""
        c = self.make()
        c.records["network"] = self.host.hooks.setup_net(container=c, settings=self.host.settings)
        return c

    def with_dead_init(self) -> Container:
        """A container whose init has exited (a zombie, so its pid is not reused): it holds no
        network namespace any more."""
        child = subprocess.Popen(["true"])
        self._inits[child.pid] = child
        _wait_for(lambda: _state(child.pid) in ("Z", None), "a child to exit")
        return self.make(child.pid)

    def kill_init(self, c: Container) -> None:
        """What teardown_init does before teardown_net: every process of the container dies,
        so its network namespace goes."""
        pid = init_pid(c)
        for proc in self._listeners.pop(pid, []):
            _stop(proc)
        if pid in self._inits:
            _stop(self._inits.pop(pid))

    def _start_init(self) -> int:
        proc = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        self._inits[proc.pid] = proc
        own = os.readlink("/proc/self/ns/net")
        _wait_for(lambda: _netns(proc.pid) not in (None, own), "unshare --net")
        return proc.pid

    # ---- traffic -------------------------------------------------------------------------

    def listen(self, c: Container | None, address: str, port: int, token: str) -> int:
        """A TCP listener answering `token`, in the container's netns (None: on the host);
        returns its port."""
        pid = None if c is None else init_pid(c)
        proc = subprocess.Popen(_in_netns(pid) + _PY + [_LISTEN, address, str(port), token],
                                stdout=subprocess.PIPE, text=True)
        self._listeners.setdefault(pid, []).append(proc)
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"listener on {address}:{port} did not start (pid {pid})")
        return int(line)

    # ---- cleanup -------------------------------------------------------------------------

    def close(self) -> None:
        """teardown_net(record=None) for every container (the rollback order: init alive),
        then kill everything; whatever of a container is still in the kernel fails the test
        (links are removed first, chains go with teardown_host)."""
        errors, left = [], {}
        for c in self.made:
            try:
                self.host.hooks.teardown_net(container=c, record=None)
            except Exception as exc:  # reported below, after the machine is clean again
                errors.append(f"{c.id}: {exc!r}")
        for procs in self._listeners.values():
            for proc in procs:
                _stop(proc)
        for proc in self._inits.values():
            _stop(proc)
        for c in self.made:
            if found := self.objects_of(c):
                left[c.id] = found
                for link in found.get("links", ()):
                    subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        if errors or left:
            pytest.fail(f"teardown_net(record=None) at the end of the test: errors {errors}, "
                        f"left {left}", pytrace=False)


class NetworkContract(DriverContract):
    """What a network driver guarantees: see hookspecs setup_host, teardown_host, setup_net,
    teardown_net, net_in, net_out, limit_bandwidth, info, snapshot and recover.

    A subclass sets `driver_class`, and may set `kernel_module` and override `skip_reason`,
    `settings_data`, `firewall_rules`, `forget_rules` and `recording_results`.
    """

    kernel_module: ClassVar[ModuleType | None] = None

    # ---- what a subclass may change (and skip_reason, DriverContract's) ---------------------

    def settings_data(self, prefix: str, pool: IPv4Network) -> dict:
        """allow_host_access: so that the container may reach the host, and a forged source
        meets no other wall than anti-spoofing."""
        return {"server": {"name_prefix": prefix},
                "network": {"pool_network": str(pool), "allow_host_access": True}}

    def firewall_rules(self, name: str) -> list[str]:
        """The packet-filter rules (and chains) that name `name`, a container id or the
        server prefix, in order. Default: the legacy iptables tables (the kit's leak
        inventory reads them too) and ip6tables'."""
        lines = []
        for binary in ("iptables-legacy-save", "ip6tables-legacy-save"):
            if shutil.which(binary):
                out = subprocess.run([binary], capture_output=True, text=True, check=True).stdout
                lines += [f"{binary} {line}" for line in out.splitlines()
                          if name in line and not line.startswith("#")]
        return lines

    def forget_rules(self, container: Container) -> None:
        """Delete the container's rules behind the driver's back, as an operator might
        (facts §7.2). Default: flush every legacy iptables chain named after its id."""
        for entry in sorted(leaks.iptables_chains()):
            table, chain = entry.split(":", 1)
            if container.id in chain:
                subprocess.run(["iptables-legacy", "-w", "-t", table, "-F", chain],
                               capture_output=True, check=True)

    def recording_results(self, prefix: str, other_id: str) -> dict[str, Any]:
        """Results for the kernel module's recorder that show another container of this
        server in the kernel (e.g. in listings), so that touching it shows in the calls."""
        return {}

    # ---- fixtures --------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def network_host(cls) -> Iterator[NetworkHost]:
        """setup_host under a random prefix and pool; teardown_host after the class, and the
        leak inventory as it was (for objects named after this prefix or its containers)."""
        self = cls()  # each test has its own instance; this one serves the class's fixture
        if os.geteuid() != 0:
            pytest.skip("network contract: namespaces, links and filters need root")
        prefix = "wtn" + secrets.token_hex(3)  # short: every name derived from it stays short
        pool = IPv4Network(f"10.253.{random.randrange(256)}.0/24")
        settings = settings_from_dict(self.settings_data(prefix, pool))
        reason = self.skip_reason(settings)
        if reason:
            pytest.skip(reason)
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            forwarding = f.read()
        before = leaks.inventory()
        hooks = build_plugin_manager({"network": self.driver_class(settings)},
                                     load_entry_points=False).hook
        host = NetworkHost(prefix, pool, settings, hooks, IdGenerator(),
                           pool.subnets(new_prefix=30))
        try:
            hooks.setup_host(settings=settings)
            yield host
        finally:
            hooks.teardown_host(settings=settings)
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write(forwarding)
        left = {kind: {name for name in names if prefix in name
                       or any(cid in name for cid in host.ids)}
                for kind, names in leaks.leftovers(before, leaks.inventory()).items()}
        left = {kind: names for kind, names in left.items() if names}
        assert not left, f"teardown_host left kernel objects behind: {left}"

    @pytest.fixture
    def hooks(self, network_host: NetworkHost) -> Any:
        return network_host.hooks

    @pytest.fixture
    def net_settings(self, network_host: NetworkHost) -> Settings:
        return network_host.settings

    @pytest.fixture
    def boxes(self, network_host: NetworkHost, tmp_path: Path) -> Iterator[Boxes]:
        made = Boxes(network_host, tmp_path / "depot", self.objects_of)
        yield made
        made.close()

    # ---- helpers -----------------------------------------------------------------------------

    def objects_of(self, container: Container) -> dict[str, set[str]]:
        """Every kernel object named after the container: the leak inventory's entries
        (links, chains, ...) and its firewall rules; {} when there is none."""
        found = {kind: {name for name in names if container.id in name}
                 for kind, names in leaks.inventory().items()}
        found["firewall rules"] = set(self.firewall_rules(container.id))
        return {kind: names for kind, names in found.items() if names}

    @staticmethod
    def host_port() -> int:
        return random.choice(HOST_PORTS)

    # ---- setup_net ---------------------------------------------------------------------------

    def test_hook_setup_net_record_is_json_and_host_and_container_reach_each_other(
            self, hooks, boxes):
        """setup_net: "Connect the container to the host"; Returns: a (JSON-able) record."""
        c = boxes.setup()
        record = c.records["network"]
        assert_json(record)
        inside = boxes.listen(c, c.container_ip, CONTAINER_PORT, "inside")
        assert connect(None, c.container_ip, inside) == "inside"
        on_host = boxes.listen(None, c.host_ip, 0, "host")
        assert connect(c, c.host_ip, on_host) == "host"

    def test_hook_setup_net_container_cannot_forge_its_source_address(self, network_host,
                                                                      boxes):
        """DESIGN.md Containment: "the network driver adds anti-spoofing". (Not yet in the
        setup_net docstring; how, e.g. a raw-table rule or rp_filter, is the driver's.)"""
        c = boxes.setup()
        neighbour = str(network_host.pool[-2])  # a pool address that is not this container's
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((c.host_ip, 0))
            sock.settimeout(REACH_TIMEOUT)
            port = sock.getsockname()[1]
            run_inside(c, _SEND_UDP, c.host_ip, str(port), f"{FORGED_OUTSIDE}:forged",
                       f"{neighbour}:forged", f"{c.container_ip}:genuine")
            got = []  # the genuine one went last on the same path: nothing comes after it
            while not got or got[-1][0] != b"genuine":
                data, (source, _) = sock.recvfrom(100)
                got.append((data, source))
        assert got == [(b"genuine", c.container_ip)]

    def test_hook_setup_net_into_a_dead_init_fails_and_teardown_net_removes_the_rest(
            self, hooks, net_settings, boxes):
        """setup_net On failure: raise DriverError; partial work may stay: teardown_net (with
        the record None, as a rollback has no record) removes it."""
        c = boxes.with_dead_init()
        with pytest.raises(DriverError):
            hooks.setup_net(container=c, settings=net_settings)
        hooks.teardown_net(container=c, record=None)
        assert self.objects_of(c) == {}

    def test_hook_setup_host_twice_keeps_the_container_and_its_rules(self, hooks, net_settings,
                                                                     boxes):
        """setup_host: MUST be idempotent: running it again never duplicates anything (and a
        restarted server's containers keep working)."""
        c = boxes.setup()
        hooks.net_in(container=c, host_port=self.host_port(), container_port=CONTAINER_PORT)
        rules = self.firewall_rules(c.id)
        server_rules = sorted(self.firewall_rules(boxes.host.prefix))
        hooks.setup_host(settings=net_settings)
        hooks.setup_host(settings=net_settings)
        assert self.firewall_rules(c.id) == rules
        assert sorted(self.firewall_rules(boxes.host.prefix)) == server_rules
        inside = boxes.listen(c, c.container_ip, CONTAINER_PORT, "inside")
        assert connect(None, c.container_ip, inside) == "inside"

    # ---- teardown_net ------------------------------------------------------------------------

    def test_hook_teardown_net_removes_every_object_and_twice_is_harmless(self, hooks,
                                                                          net_settings, boxes):
        """teardown_net: removes what setup_net made; calling it twice is harmless. Here in
        the rollback order, with the init (and its netns) alive."""
        c = boxes.make()
        assert self.objects_of(c) == {}
        c.records["network"] = hooks.setup_net(container=c, settings=net_settings)
        hooks.net_in(container=c, host_port=self.host_port(), container_port=CONTAINER_PORT)
        hooks.net_out(container=c, rule=net_out_rule(network=boxes.host.pool[1], port=53))
        hooks.limit_bandwidth(container=c, rate=100000, burst=1000)
        assert self.objects_of(c), "setup_net made nothing named after the container id"
        hooks.teardown_net(container=c, record=c.records["network"])
        assert self.objects_of(c) == {}
        hooks.teardown_net(container=c, record=c.records["network"])
        assert self.objects_of(c) == {}

    def test_hook_teardown_net_after_the_init_died(self, hooks, boxes):
        """teardown_net: called after teardown_init on destroy, "so the init that held the
        network namespace is normally dead"."""
        c = boxes.setup()
        hooks.limit_bandwidth(container=c, rate=100000, burst=1000)
        boxes.kill_init(c)
        hooks.teardown_net(container=c, record=c.records["network"])
        assert self.objects_of(c) == {}

    def test_hook_teardown_net_with_record_none_after_a_real_setup(self, hooks, boxes):
        """teardown_net: record may be None (recovery of a dead container, a server killed
        during create): it finds what setup_net made from the container's id alone."""
        c = boxes.setup()
        hooks.net_in(container=c, host_port=self.host_port(), container_port=CONTAINER_PORT)
        hooks.limit_bandwidth(container=c, rate=100000, burst=1000)
        hooks.teardown_net(container=c, record=None)
        assert self.objects_of(c) == {}

    def test_hook_teardown_net_of_a_container_never_set_up_is_harmless(self, hooks, boxes):
        """teardown_net May assume: nothing; the veth, the chains, or both may be missing."""
        c = boxes.make()
        hooks.teardown_net(container=c, record=None)
        assert self.objects_of(c) == {}

    def test_hook_teardown_net_of_one_container_leaves_the_other_working(self, hooks, boxes):
        """setup_net/teardown_net: "Never touch objects not named after this container's id"."""
        first, second = boxes.setup(), boxes.setup()
        host_port = self.host_port()
        hooks.net_in(container=second, host_port=host_port, container_port=CONTAINER_PORT)
        rules = self.firewall_rules(second.id)
        hooks.teardown_net(container=first, record=first.records["network"])
        assert self.objects_of(first) == {}
        assert self.firewall_rules(second.id) == rules
        boxes.listen(second, "0.0.0.0", CONTAINER_PORT, "second")
        assert connect(None, second.container_ip, CONTAINER_PORT) == "second"
        assert connect(None, second.host_ip, host_port) == "second"
        on_host = boxes.listen(None, second.host_ip, 0, "host")
        assert connect(second, second.host_ip, on_host) == "host"

    # ---- net_in --------------------------------------------------------------------------

    def test_hook_net_in_forwards_a_host_port_to_the_container_port(self, hooks, boxes):
        """net_in: forward host_port on the host's addresses to container_port; Returns: a
        (JSON-able) record; teardown_net removes the rule with the rest."""
        c = boxes.setup()
        boxes.listen(c, "0.0.0.0", CONTAINER_PORT, "inside")
        host_port = self.host_port()
        record = hooks.net_in(container=c, host_port=host_port, container_port=CONTAINER_PORT)
        assert_json(record)
        addresses = [c.host_ip] + [a for a in [primary_address()] if a]
        for address in addresses:
            assert connect(None, address, host_port) == "inside", address
        hooks.teardown_net(container=c, record=c.records["network"])
        assert self.objects_of(c) == {}
        for address in addresses[1:]:
            assert connect(None, address, host_port) != "inside", address

    # ---- net_out -------------------------------------------------------------------------

    def test_hook_net_out_opens_only_the_requested_destination(self, hooks, boxes):
        """net_out: "Allow the container's traffic to a network / port / protocol"; without a
        rule a container cannot reach another (facts §5.4)."""
        client, server = boxes.setup(), boxes.setup()
        boxes.listen(server, "0.0.0.0", CONTAINER_PORT, "wanted")
        boxes.listen(server, "0.0.0.0", OTHER_PORT, "other")
        assert connect(client, server.container_ip, CONTAINER_PORT) != "wanted"
        resource = hooks.net_out(container=client, rule=net_out_rule(
            network=f"{server.container_ip}/32", port=CONTAINER_PORT))
        assert_json(resource)
        assert connect(client, server.container_ip, CONTAINER_PORT) == "wanted"
        assert connect(client, server.container_ip, OTHER_PORT) != "other"

    @pytest.mark.parametrize("fields, text", [
        ({"protocol": TCP}, "Please specify network, port, and/or port_range."),
        ({"network": "10.0.0.0/8", "port_range": "2002:2000"},
         "Port range maximum must be greater than minimum"),
        ({"port_range": "2000:2000"}, "Port range maximum must be greater than minimum"),
    ])
    def test_hook_net_out_refuses_with_wardens_text_and_leaves_the_rules(self, hooks, boxes,
                                                                         fields, text):
        """net_out On failure: raise WardenError with Warden's validation texts (facts §2.2,
        §5.4); no rule half-written."""
        c = boxes.setup()
        rules = self.firewall_rules(c.id)
        with pytest.raises(WardenError) as refused:
            hooks.net_out(container=c, rule=net_out_rule(**fields))
        assert str(refused.value) == text
        assert self.firewall_rules(c.id) == rules

    @pytest.mark.parametrize("fields", [
        {"port": 53, "protocol": ICMP},
        {"port_range": "2000:2002", "protocol": ALL},
        {"network": "10.0.0.0/8", "port": 80, "protocol": ALL},
    ])
    def test_hook_net_out_refuses_ports_without_tcp_or_udp_and_leaves_the_rules(
            self, hooks, boxes, fields):
        """net_out On failure: raise WardenError, no rule half-written (Warden refuses these
        combinations through iptables: `command exited with failure`, facts §5.4; the text is
        the driver's)."""
        c = boxes.setup()
        rules = self.firewall_rules(c.id)
        with pytest.raises(WardenError):
            hooks.net_out(container=c, rule=net_out_rule(**fields))
        assert self.firewall_rules(c.id) == rules

    # ---- limit_bandwidth, info -----------------------------------------------------------

    def test_hook_limit_bandwidth_reads_back_what_it_set(self, hooks, boxes):
        """limit_bandwidth Returns: (rate, burst) read back; rate and burst None only read;
        info's bandwidth_stat reports both directions (facts §5.1, §5.9)."""
        c = boxes.setup()
        for rate, burst in ((100000, 1000), (200000, 2000)):
            assert tuple(hooks.limit_bandwidth(container=c, rate=rate, burst=burst)) == \
                (rate, burst)
            assert tuple(hooks.limit_bandwidth(container=c, rate=None, burst=None)) == \
                (rate, burst)
            assert info_fields(hooks, c)["bandwidth_stat"] == {
                "in_rate": rate, "in_burst": burst, "out_rate": rate, "out_burst": burst}

    def test_hook_info_without_shaping_reports_no_limit(self, hooks, boxes):
        """info: bandwidth_stat defaults to 4294967295 for all four (facts §5.1)."""
        c = boxes.setup()
        assert info_fields(hooks, c)["bandwidth_stat"] == {
            "in_rate": NO_LIMIT, "in_burst": NO_LIMIT, "out_rate": NO_LIMIT,
            "out_burst": NO_LIMIT}

    # ---- snapshot, recover ---------------------------------------------------------------

    def net_in_and_out(self, hooks, boxes) -> tuple[Container, Container, int]:
        """A client container with a recorded net_in (to CONTAINER_PORT) and net_out (to the
        server container's CONTAINER_PORT), both listening; the rules kept where the
        orchestrator keeps them."""
        client, server = boxes.setup(), boxes.setup()
        boxes.listen(client, "0.0.0.0", CONTAINER_PORT, "client")
        boxes.listen(server, "0.0.0.0", CONTAINER_PORT, "wanted")
        boxes.listen(server, "0.0.0.0", OTHER_PORT, "other")
        host_port = self.host_port()
        hooks.net_in(container=client, host_port=host_port, container_port=CONTAINER_PORT)
        client.net_in_rules.append([host_port, CONTAINER_PORT])
        client.net_out_rules.append(hooks.net_out(container=client, rule=net_out_rule(
            network=server.container_ip, port=CONTAINER_PORT)))
        return client, server, host_port

    @staticmethod
    def assert_net_in_and_out_work(client: Container, server: Container, host_port: int):
        assert connect(None, client.host_ip, host_port) == "client"
        assert connect(client, server.container_ip, CONTAINER_PORT) == "wanted"
        assert connect(client, server.container_ip, OTHER_PORT) != "other"

    def test_hook_recover_of_a_live_container_keeps_net_in_and_net_out(self, hooks, boxes):
        """recover: re-attach to a container that survived a restart (a new driver, nothing
        in memory); its rules stay as they were, not doubled; snapshot is JSON-able."""
        client, server, host_port = self.net_in_and_out(hooks, boxes)
        rules = self.firewall_rules(client.id)
        for part in hooks.snapshot(container=client):
            assert_json(part)
        again = build_plugin_manager({"network": self.driver_class(boxes.host.settings)},
                                     load_entry_points=False).hook
        again.recover(container=reloaded(client), settings=boxes.host.settings)
        assert self.firewall_rules(client.id) == rules
        self.assert_net_in_and_out_work(client, server, host_port)
        again.teardown_net(container=client, record=client.records["network"])
        assert self.objects_of(client) == {}

    def test_hook_recover_restores_rules_deleted_behind_its_back(self, hooks, boxes):
        """recover: "restoring what is missing": recorded net_in and net_out rules deleted
        behind Warden's back are re-added on restart (facts §7.2)."""
        client, server, host_port = self.net_in_and_out(hooks, boxes)
        self.forget_rules(client)
        assert connect(None, client.host_ip, host_port) != "client"
        again = build_plugin_manager({"network": self.driver_class(boxes.host.settings)},
                                     load_entry_points=False).hook
        again.recover(container=reloaded(client), settings=boxes.host.settings)
        self.assert_net_in_and_out_work(client, server, host_port)

    # ---- without root: the kernel module recorded ----------------------------------------

    def test_hook_teardown_net_without_record_names_only_this_container(self, tmp_path):
        """setup_net: "Never touch objects not named after this container's id"; teardown_net
        with the record None finds its objects by the id. Every kernel call teardown_net makes
        names the id or the server prefix (a call on a server-wide object with an opaque
        selector is judged by the two-container kernel test), none names another container,
        and some name the id. Needs no root: kernel.py is recorded, never run."""
        if self.kernel_module is None:
            pytest.skip(f"{type(self).__name__} names no kernel module to record")
        prefix, ids = "wtn" + secrets.token_hex(3), IdGenerator()
        cid, other = ids(), ids()
        settings = settings_from_dict(self.settings_data(prefix, IPv4Network("10.253.0.0/24")))
        hooks = build_plugin_manager({"network": self.driver_class(settings)},
                                     load_entry_points=False).hook
        c = Container(id=cid, handle=f"net-contract-{cid}", path=tmp_path / cid,
                      network=IPv4Network("10.253.0.4/30"), records={"exec": {"pid": 1}})
        with RecordingModule(self.kernel_module,
                             self.recording_results(prefix, other)) as recording:
            hooks.teardown_net(container=c, record=None)
        named = [call for call in recording.calls if call.args or call.kwargs]
        assert any(cid in call.text() for call in named), \
            f"teardown_net(record=None) named nothing of {cid}: {recording.calls}"
        for call in named:
            assert other not in call.text(), f"touches another container: {call}"
            assert cid in call.text() or prefix in call.text(), f"names neither: {call}"


# ---- helpers -------------------------------------------------------------------------------

def init_pid(container: Container) -> int:
    return container.records["exec"]["pid"]


def net_out_rule(**fields: Any) -> dict:
    """A NetOut request as the server hands it over: every field, None when absent."""
    rule = {name: None for name in NET_OUT_FIELDS}
    rule.update({k: str(v) if k == "network" else v for k, v in fields.items()})
    return rule


def assert_json(value: Any) -> None:
    assert json.loads(json.dumps(value)) == value, f"not JSON-able as it is: {value!r}"


def info_fields(hooks: Any, container: Container) -> dict:
    """info's answers merged, as the server merges them."""
    fields: dict = {}
    for part in hooks.info(container=container, full=True):
        fields.update(part or {})
    return fields


def connect(c: Container | None, address: str, port: int) -> str:
    """What a TCP server at address:port says to a client in the container's netns (None:
    on the host): its token, or refused / timeout / error ..."""
    if c is not None:
        return run_inside(c, _CONNECT, address, str(port), str(REACH_TIMEOUT))
    with socket.socket() as sock:
        sock.settimeout(REACH_TIMEOUT)
        try:
            sock.connect((address, port))
            return sock.recv(100).decode() or "closed"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error {exc.strerror}"


def run_inside(c: Container, script: str, *argv: str) -> str:
    out = subprocess.run(_in_netns(init_pid(c)) + _PY + [script, *argv], capture_output=True,
                         text=True, timeout=30, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"in the netns of {c.id}: {out.stderr.strip()}")
    return out.stdout.strip()


def primary_address() -> str | None:
    """The host's address towards its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((ROUTE_PROBE, 9))
        except OSError:
            return None
        return sock.getsockname()[0]


def _in_netns(pid: int | None) -> list[str]:
    return [] if pid is None else ["nsenter", f"--net=/proc/{pid}/ns/net"]


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return None


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.001)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
