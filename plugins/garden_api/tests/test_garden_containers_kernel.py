"""Garden's container routes on the real kernel: a warden-server process with both front ends
(overlayfs, wshd, the host's cgroups, iptables), driven over raw HTTP, with the Warden client
beside it for what Garden's processes routes would do (running a job)."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from garden_client import GardenClient

from warden_framework.client import Client
from warden_framework.testing import real_server
from warden_framework.testing.process import ServerProcess
from warden_framework.testing.real_server import server_config

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MIB = 1 << 20
FULL_LIMITS = {"bandwidth_limits": {}, "cpu_limits": {}, "disk_limits": {},
               "memory_limits": {}, "pid_limits": {}}


def missing() -> str | None:
    return real_server.missing()


def config(tmp_path: Path, **sections) -> dict:
    """The kit's real-server shape, the iptables network driver, and both front ends."""
    data = server_config(tmp_path, prefix="wg", drivers={"network": "iptables"}, frontends={
        "warden": {}, "garden": {"listen_address": str(tmp_path / "garden.sock")}})
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


class Server:
    """A running server: its process, a Garden client and the Warden socket."""

    def __init__(self, tmp_path: Path, **sections) -> None:
        self.process = ServerProcess(config(tmp_path, **sections), tmp_path)
        self.garden = GardenClient(str(tmp_path / "garden.sock"))
        self.warden_socket = self.process.socket
        self.settings = self.process.settings

    def create(self, **spec) -> str:
        reply = self.garden.call("POST", "/containers", {"image": {}, "limits": FULL_LIMITS,
                                                         **spec})
        assert reply.status == 200, reply.body
        return reply.json()["Handle"]

    def get(self, path: str) -> dict:
        reply = self.garden.call("GET", path)
        assert reply.status == 200, reply.body
        return reply.json()

    def container_id(self, handle: str) -> str:
        return Path(self.get(f"/containers/{handle}/info")["ContainerPath"]).name

    def handles_everywhere(self) -> tuple[list[str], list[str]]:
        with Client(self.warden_socket) as warden:
            through_warden = sorted(h.decode() for h in warden.list().handles)
        return sorted(self.get("/containers")["Handles"]), through_warden


def start(tmp_path: Path, **sections):
    reason = missing()
    if reason:
        pytest.skip(reason)
    server = Server(tmp_path, **sections)
    try:
        server.process.start()
        yield server
    finally:
        server.process.stop_and_clean()


@pytest.fixture
def server(tmp_path):
    yield from start(tmp_path)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def iptables_rules(chain: str) -> str:
    return subprocess.run(["iptables-legacy", "-w", "-S", chain], check=True,
                          capture_output=True, text=True).stdout


# ------------------------------------------------------------- limits and rules at create

def test_limits_and_net_rules_at_create_are_the_kernels(server):
    limits = {"memory_limits": {"limit_in_bytes": 64 * MIB}, "cpu_limits": {"weight": 256},
              "pid_limits": {"max": 40}, "bandwidth_limits": {"rate": 100000, "burst": 10000},
              "disk_limits": {}}
    handle = server.create(limits=limits, netin=[{"host_port": 0, "container_port": 8080}],
                           netout_rules=[{"protocol": 1, "ports": [{"start": 443, "end": 443}],
                                          "networks": [{"start": "10.1.2.3", "end": "10.1.2.3"}]}])
    path = f"/containers/{handle}"
    assert server.get(f"{path}/limits/memory") == {"limit_in_bytes": 64 * MIB}
    assert server.get(f"{path}/limits/cpu") == {"weight": 256, "limit_in_shares": 256}
    assert server.get(f"{path}/limits/bandwidth") == {"rate": 100000, "burst": 10000}
    assert server.get(f"{path}/limits/disk") == {}  # no disk driver: no quota
    metrics = server.get(f"{path}/metrics")
    assert metrics["PidStat"]["Max"] == 40 and metrics["PidStat"]["Current"] >= 1
    assert metrics["MemoryStat"]["hierarchical_memory_limit"] == 64 * MIB
    info = server.get(f"{path}/info")
    pool = ipaddress.IPv4Network(server.settings.network.pool_network)
    host_ip, container_ip = (ipaddress.IPv4Address(info[k]) for k in ("HostIP", "ContainerIP"))
    assert host_ip in pool and container_ip == host_ip + 1
    assert info["MappedPorts"] == [{"HostPort": server.settings.port.pool_start_port,
                                    "ContainerPort": 8080}]
    chain = f"{server.settings.server.name_prefix}-i-{server.container_id(handle)}"
    rules = iptables_rules(chain)
    assert "-d 10.1.2.3/32" in rules and "--dport 443" in rules, rules


def test_a_process_past_the_memory_limit_given_at_create_is_an_oom_event(server):
    handle = server.create(limits={**FULL_LIMITS, "memory_limits": {"limit_in_bytes": 32 * MIB}})
    with Client(server.warden_socket) as warden:
        hog = warden.run(handle=handle, script=b"head -c 100m /dev/zero | tail > /dev/null")
    assert hog.exit_status != 0
    wait_for(lambda: server.get(f"/containers/{handle}/info")["State"] == "stopped")
    assert server.get(f"/containers/{handle}/info")["Events"] == ["out of memory"]


def test_network_stat_counts_what_reaches_the_container(server):
    handle = server.create()
    container_ip = server.get(f"/containers/{handle}/info")["ContainerIP"]
    before = server.get(f"/containers/{handle}/metrics")["NetworkStat"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(20):
            sock.sendto(b"x" * 1000, (container_ip, 9))
    after = server.get(f"/containers/{handle}/metrics")["NetworkStat"]
    assert after["RxBytes"] - before["RxBytes"] >= 20 * 1000
    assert after["TxBytes"] >= before["TxBytes"]


@pytest.mark.parametrize("spec, message", [
    ({"limits": {**FULL_LIMITS, "memory_limits": {"limit_in_bytes": 4096}}},
     re.escape("Failed setting memory limit: Device or resource busy (writing 4096 to "
               "memory.limit_in_bytes)")),
    ({"netin": [{"host_port": 70000, "container_port": 80}]},
     re.escape("Invalid host port: 70000 (must be 1..65535)")),
    ({"netout_rules": [{"protocol": 1, "networks": [{"start": "10.0.0.1"}]}],
      "limits": {**FULL_LIMITS, "bandwidth_limits": {"rate": 1000}}},
     "limit bandwidth of [0-9a-v]{11}: bandwidth burst must be at least 1 byte, got 0"),
], ids=["memory below usage", "host port out of range", "bandwidth without burst"])
def test_a_create_the_kernel_refuses_leaves_nothing_behind(server, spec, message):
    reply = server.garden.call("POST", "/containers", {"image": {}, "handle": "doomed", **spec})
    assert reply.status == 500, reply.body
    assert re.fullmatch(message, reply.json()["Message"]), reply.json()["Message"]
    assert server.handles_everywhere() == ([], [])
    depot = Path(server.settings.server.container_depot_path)
    wait_for(lambda: not any(depot.iterdir()))  # destroy's cleanup runs after its answer
    server.create(handle="doomed")  # the handle is free again


# ------------------------------------------------------------ both front ends, one core

def test_a_warden_container_answers_garden_with_real_numbers(server):
    with Client(server.warden_socket) as warden:
        handle = warden.create().handle.decode()
        work = warden.run(handle=handle, script=b"dd if=/dev/zero of=/tmp/f bs=1M count=2 "
                                                b"2>/dev/null; i=0; while [ $i -lt 30000 ]; "
                                                b"do i=$((i+1)); done")
        assert work.exit_status == 0
        job = warden.spawn(handle=handle, script=b"sleep 60").job_id
        info = server.get(f"/containers/{handle}/info")
        assert info["State"] == "active" and info["Properties"] == {}
        assert info["ProcessIDs"] == [str(job)]
        metrics = server.get(f"/containers/{handle}/metrics")
        assert metrics["CPUStat"]["Usage"] > 0
        assert metrics["MemoryStat"]["total_rss"] + metrics["MemoryStat"]["total_cache"] > 0
        assert metrics["DiskStat"]["ExclusiveBytesUsed"] >= 2 * MIB
        assert metrics["PidStat"]["Current"] >= 2  # the init and the sleep
        assert server.garden.call("DELETE", f"/containers/{handle}").status == 200
        assert list(warden.list().handles) == []


def test_a_garden_container_is_destroyed_through_warden(server):
    handle = server.create(properties={"made": "garden"})
    with Client(server.warden_socket) as warden:
        assert warden.info(handle=handle).state == "active"
        warden.destroy(handle=handle)
    assert server.garden.call("GET", f"/containers/{handle}/info").status == 404
    assert server.handles_everywhere() == ([], [])


def test_properties_and_grace_time_survive_a_restart(server):
    kept = server.create(handle="kept", properties={"team": "x"})
    reaped = server.create(handle="reaped", properties={"team": "x"})
    reply = server.garden.call("PUT", f"/containers/{reaped}/grace_time", raw=b"4000000000\n")
    assert reply.status == 200
    server.process.kill()
    server.process.start()
    assert server.handles_everywhere()[0] == ["kept", "reaped"]  # not reaped before the kill
    assert server.get(f"/containers/{kept}/properties") == {"team": "x"}
    by_property = server.garden.call("GET", "/containers", query={"team": "x"}).json()
    assert sorted(by_property["Handles"]) == ["kept", "reaped"]
    wait_for(lambda: server.get("/containers")["Handles"] == ["kept"], timeout=30)
    assert server.get(f"/containers/{kept}/info")["Properties"] == {"team": "x"}


# ------------------------------------------------------------------------ disk quotas

@pytest.fixture
def quota_server(tmp_path):
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("no mkfs.btrfs: the btrfs disk driver needs btrfs-progs")
    yield from start(
        tmp_path, drivers={"disk": "btrfs"}, quota={"disk_quota_enabled": True},
        plugins={"quota_disk": {"volumes": str(tmp_path / "volumes"),
                                "image": str(tmp_path / "volumes.img"), "image_size": 1 << 30}})


def test_a_disk_limit_at_create_stops_writes(quota_server):
    server = quota_server
    handle = server.create(limits={**FULL_LIMITS, "disk_limits": {"byte_hard": 8 * MIB}})
    assert server.get(f"/containers/{handle}/limits/disk") == {"byte_hard": 8 * MIB, "scope": 1}
    with Client(server.warden_socket) as warden:
        ok = warden.run(handle=handle, script=b"dd if=/dev/zero of=/tmp/a bs=1M count=2 && sync")
        assert ok.exit_status == 0
        used = server.get(f"/containers/{handle}/metrics")["DiskStat"]
        assert used["ExclusiveBytesUsed"] >= 2 * MIB
        assert used["TotalBytesUsed"] == used["ExclusiveBytesUsed"]
        big = warden.run(handle=handle, script=b"dd if=/dev/zero of=/tmp/b bs=1M count=16 "
                                               b"&& sync")
        assert big.exit_status != 0 and b"quota exceeded" in big.stderr.lower()


# ------------------------------------------------------------------------ privileged containers

def run_in(garden: GardenClient, handle: str, argv: list[str]) -> tuple[int, bytes]:
    """Run argv as root in the container through Garden's process protocol; (exit, stdout)."""
    reply, control = garden.hijack("POST", f"/containers/{handle}/processes",
                                   {"path": argv[0], "args": argv[1:], "user": "root",
                                    "rlimits": {}, "image": {}})
    assert reply.status == 201, reply.body
    first = control.message()
    _, out = garden.hijack("GET", f"/containers/{handle}/processes/{first['process_id']}"
                                  f"/attaches/{first['stream_id']}/stdout")
    _, err = garden.hijack("GET", f"/containers/{handle}/processes/{first['process_id']}"
                                  f"/attaches/{first['stream_id']}/stderr")
    try:
        control.send({"process_id": first["process_id"], "source": 0})  # stdin EOF
    except BrokenPipeError:
        pass  # it ended and the server closed the control stream first
    while (message := control.message()) is not None and "exit_status" not in message:
        pass
    stdout = out.read_all()
    err.read_all()
    for stream in (control, out, err):
        stream.close()
    return message["exit_status"], stdout


def test_an_attacker_cannot_ask_garden_for_host_root_by_default(server):
    """Garden's privileged container has no user namespace. A client asking for one is
    refused, nothing is made, and an ordinary container's root is no host root: its uid map
    sends 0 to a high host id."""
    reply = server.garden.call("POST", "/containers", {"privileged": True, "image": {},
                                                       "limits": FULL_LIMITS})
    assert reply.status == 500
    assert "privileged containers are not allowed" in reply.json()["Message"]
    assert server.handles_everywhere() == ([], [])
    assert os.listdir(server.settings.depot) == []
    handle = server.create()
    status, out = run_in(server.garden, handle, ["cat", "/proc/self/uid_map"])
    inside, host, _count = out.split()[:3]
    assert status == 0 and inside == b"0" and int(host) >= 65536


@pytest.fixture
def privileged_server(tmp_path):
    yield from start(tmp_path, frontends={"warden": {}, "garden": {
        "listen_address": str(tmp_path / "garden.sock"), "allow_privileged": True}})


def test_an_operator_may_allow_privileged_containers(privileged_server):
    handle = privileged_server.create(privileged=True)
    status, out = run_in(privileged_server.garden, handle, ["cat", "/proc/self/uid_map"])
    assert status == 0 and out.split()[:2] == [b"0", b"0"]  # the initial user namespace
