"""Garden's container routes over raw HTTP on fake drivers (the logic: exact JSON, statuses,
errors, what reaches the core). The kernel's side is test_garden_containers_kernel.py."""

from __future__ import annotations

import ipaddress
import os
import socket
import time

import pytest
from garden_client import GardenClient
from warden_garden_api.frontend import GardenFrontEnd

from warden_framework.client import Client
from warden_framework.client.errors import ServerError
from warden_framework.server.listener import WardenServer
from warden_framework.testing.fakes import FAKE_DRIVERS, FakeNetwork
from warden_framework.testing.server import fake_settings, running_server

NS = 1_000_000_000
FULL_LIMITS = {"bandwidth_limits": {}, "cpu_limits": {}, "disk_limits": {},
               "memory_limits": {}, "pid_limits": {}}  # the Go client always sends all five


def create(garden: GardenClient, **spec) -> str:
    reply = garden.call("POST", "/containers", {"image": {}, "limits": FULL_LIMITS, **spec})
    assert reply.status == 200, reply.body
    assert list(reply.json()) == ["Handle"]
    return reply.json()["Handle"]


def refused(garden: GardenClient, status: int = 500, **spec) -> str:
    """The Message of a create that must fail with `status`."""
    reply = garden.call("POST", "/containers", {"image": {}, **spec})
    assert reply.status == status, reply.body
    body = reply.json()
    assert body["Type"] == "" and body["Handle"] == "" and body["ProcessID"] == ""
    return body["Message"]


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def nothing_left(srv, garden: GardenClient, warden_socket: str) -> None:
    """No container through either front end, none in the core, the depot empty once the
    cleanups ran, and every pool entry free again."""
    assert garden.call("GET", "/containers").json() == {"Handles": []}
    with Client(warden_socket) as warden:
        assert list(warden.list().handles) == []
    orch = srv.orchestrator
    assert orch.handles() == []

    def released() -> bool:  # destroy's cleanup runs after its answer: the depot, then pools
        return ((not orch.depot.exists() or not any(orch.depot.iterdir()))
                and all(len(pool) == pool.size
                        for pool in (orch.pools.network, orch.pools.uids, orch.pools.ports)))
    wait_for(released)


# --------------------------------------------------------------------------- the server

def test_capacity_reports_host_memory_depot_disk_and_pool_room(fake_garden):
    srv, garden, _ = fake_garden
    reply = garden.call("GET", "/capacity")
    assert reply.status == 200
    with open("/proc/meminfo") as f:
        mem_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    depot = srv.orchestrator.depot
    fs = os.statvfs(depot if depot.exists() else "/")
    # fake_settings: 8 uids and 10.98.0.0/27 (eight /30s)
    assert reply.json() == {"memory_in_bytes": mem_kib * 1024,
                            "disk_in_bytes": fs.f_blocks * fs.f_frsize, "max_containers": 8}


def test_list_filters_by_every_property_given(fake_garden):
    _, garden, _ = fake_garden
    assert garden.call("GET", "/containers").json() == {"Handles": []}
    a = create(garden, handle="a", properties={"team": "x", "tier": "web"})
    b = create(garden, handle="b", properties={"team": "x", "tier": "db"})
    c = create(garden, handle="c")
    assert sorted(garden.call("GET", "/containers").json()["Handles"]) == [a, b, c]
    assert sorted(garden.call("GET", "/containers", query={"team": "x"}).json()["Handles"]) \
        == [a, b]
    assert garden.call("GET", "/containers",
                       query={"team": "x", "tier": "db"}).json() == {"Handles": [b]}
    assert garden.call("GET", "/containers", query={"team": "y"}).json() == {"Handles": []}
    assert garden.call("GET", "/containers", query={"tier": ""}).json() == {"Handles": []}


# ------------------------------------------------------------------------------ create

def test_a_privileged_create_is_refused_unless_the_operator_allows_it(fake_garden):
    srv, garden, _ = fake_garden
    reply = garden.call("POST", "/containers", {"privileged": True, "image": {}, "limits": {}})
    assert reply.status == 500 and "frontends.garden.allow_privileged" in reply.json()["Message"]
    assert srv.orchestrator.handles() == []


@pytest.mark.parametrize("garden_options", [{"allow_privileged": True}])
def test_create_turns_the_container_spec_into_the_cores(fake_garden, tmp_path):
    srv, garden, _ = fake_garden
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    handle = create(garden, handle="spec-1", grace_time=90 * NS, image={"uri": f"raw://{rootfs}"},
                    bind_mounts=[{"src_path": str(shared), "dst_path": "/ro"},
                                 {"src_path": str(shared), "dst_path": "/rw", "mode": 1}],
                    network="10.98.0.10", properties={"k": "v"}, env=["A=1", "B=x=y"],
                    privileged=True)
    assert handle == "spec-1"
    c = srv.orchestrator.containers[handle]
    assert c.grace_time == 90.0
    assert c.rootfs_request == str(rootfs)
    assert c.binds == [{"src": str(shared), "dst": "/ro", "mode": "ro"},
                       {"src": str(shared), "dst": "/rw", "mode": "rw"}]
    assert str(c.network) == "10.98.0.8/30" and c.container_ip == "10.98.0.10"
    assert c.properties == {"k": "v"} and c.env == ["A=1", "B=x=y"]
    assert c.id_map is None  # privileged: no user namespace


def test_create_without_a_handle_or_grace_time_takes_the_servers(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden)
    c = srv.orchestrator.containers[handle]
    assert handle == c.id  # generated
    assert c.grace_time is None  # fake_settings' container_grace_time
    assert c.rootfs_request is None and c.id_map is not None


@pytest.mark.parametrize("image, expected", [
    ({"uri": "docker:///busybox"}, ("image docker:///busybox: docker:// is not supported: "
     "this server fetches no images; give a rootfs directory (an absolute path or raw:///path)")),
    ({"uri": "oci:///img"}, ("image oci:///img: oci:// is not supported: this server fetches "
     "no images; give a rootfs directory (an absolute path or raw:///path)")),
    ({"uri": "raw://host/x"}, ("image raw://host/x: a raw URI names an absolute path: "
     "raw:///path")),
])
def test_create_refuses_images_it_cannot_fetch(fake_garden, image, expected):
    srv, garden, warden = fake_garden
    assert refused(garden, image=image) == expected
    nothing_left(srv, garden, warden)


def test_create_takes_the_deprecated_rootfs_field(fake_garden, tmp_path):
    srv, garden, _ = fake_garden
    handle = create(garden, rootfs=str(tmp_path))
    assert srv.orchestrator.containers[handle].rootfs_request == str(tmp_path)


@pytest.mark.parametrize("network, expected", [
    ("10.98.0.4/30", "10.98.0.4/30"),
    ("10.98.0.6/30", "10.98.0.4/30"),
    ("10.98.0.14", "10.98.0.12/30"),
    ("10.98.0.18/24", "10.98.0.16/30"),  # a fixed address: the container gets its /30
    ("10.98.0.22/32", "10.98.0.20/30"),
])
def test_create_takes_a_fixed_address_or_a_30(fake_garden, network, expected):
    srv, garden, _ = fake_garden
    handle = create(garden, network=network)
    assert str(srv.orchestrator.containers[handle].network) == expected


@pytest.mark.parametrize("network, expected", [
    ("10.98.0.0/24", ("network 10.98.0.0/24: picking an address inside a subnet larger than "
     "/30 is not supported (the pool hands out /30s): give the container's address or a /30")),
    ("10.98.0.5", ("network 10.98.0.5: a container's address is the second of its /30 "
     "(10.98.0.6 in 10.98.0.4/30), so 10.98.0.5 cannot be one")),
    ("10.98.0.24/32", ("network 10.98.0.24/32: a container's address is the second of its /30 "
     "(10.98.0.26 in 10.98.0.24/30), so 10.98.0.24 cannot be one")),
    ("banana", "network banana: Expected 4 octets in 'banana'"),
    ("10.97.0.2", "Could not acquire network: 10.97.0.0"),  # outside the pool: the core's
])
def test_create_refuses_networks_the_pool_cannot_give(fake_garden, network, expected):
    srv, garden, warden = fake_garden
    assert refused(garden, network=network) == expected
    nothing_left(srv, garden, warden)


def test_create_refuses_bind_mounts_it_cannot_make(fake_garden, tmp_path):
    srv, garden, warden = fake_garden
    src = str(tmp_path)
    assert refused(garden, bind_mounts=[{"src_path": "/data", "dst_path": "/d", "origin": 1}]) \
        == ("bind_mounts[0]: origin 1 (a source inside the container) is not supported; "
            "only origin 0, a host path")
    assert refused(garden, bind_mounts=[{"src_path": src, "dst_path": "/d", "mode": 2}]) \
        == "bind_mounts[0].mode: 2 is not 0 (ro) or 1 (rw)"
    assert refused(garden, bind_mounts=[{"dst_path": "/d"}]) \
        == "bind_mounts[0]: src_path and dst_path are both needed"
    assert refused(garden, bind_mounts=[{"src_path": "/etc", "dst_path": "/d"}]) == (
        "bind mount source /etc is not under an allowed path (/tmp, /var/tmp: "
        "server.bind_mount_allowed_paths)")
    nothing_left(srv, garden, warden)


def test_create_refuses_a_duplicate_handle_and_bad_env(fake_garden):
    srv, garden, _ = fake_garden
    create(garden, handle="dup")
    assert refused(garden, handle="dup") == "container with handle: dup already exists."
    assert refused(garden, env=["NOEQUALS"]) == "env[0] 'NOEQUALS': KEY=VALUE is needed"
    assert srv.orchestrator.handles() == ["dup"]


@pytest.mark.parametrize("spec, expected", [
    ({"limits": {"memory_limits": {"limit_in_bytes": "1G"}}},
     "limits.memory_limits.limit_in_bytes: an unsigned 64-bit integer is needed, got '1G'"),
    ({"grace_time": -1}, "grace_time: an unsigned 64-bit integer is needed, got -1"),
    ({"properties": {"a": 1}}, "properties.a: a string is needed, got 1"),
    ({"netin": [{"host_port": 1 << 32}]},
     "netin[0].host_port: an unsigned 32-bit integer is needed, got 4294967296"),
    ({"privileged": "yes"}, "privileged: true or false is needed, got 'yes'"),
])
def test_create_answers_a_body_of_the_wrong_json_types_with_400(fake_garden, spec, expected):
    srv, garden, warden = fake_garden
    assert refused(garden, 400, **spec) == expected
    nothing_left(srv, garden, warden)


# ------------------------------------------------------------- limits and rules at create

def test_limits_at_create_read_back_through_current_limits(fake_garden):
    srv, garden, _ = fake_garden
    limits = {**FULL_LIMITS, "memory_limits": {"limit_in_bytes": 64 << 20},
              "cpu_limits": {"weight": 512}}
    handle = create(garden, limits=limits)
    path = f"/containers/{handle}/limits"
    assert garden.call("GET", f"{path}/memory").json() == {"limit_in_bytes": 64 << 20}
    assert garden.call("GET", f"{path}/cpu").json() == {"weight": 512, "limit_in_shares": 512}
    # the fakes read back no shaping or quota: the real kernel's are in the kernel tests
    c = srv.orchestrator.containers[handle]
    assert (c.memory_limit, c.cpu_shares) == (64 << 20, 512)


def test_limit_in_shares_counts_when_weight_is_absent(fake_garden):
    _, garden, _ = fake_garden
    handle = create(garden, limits={**FULL_LIMITS, "cpu_limits": {"limit_in_shares": 300}})
    assert garden.call("GET", f"/containers/{handle}/limits/cpu").json() == \
        {"weight": 300, "limit_in_shares": 300}


def test_current_limits_are_empty_when_none_was_set(fake_garden):
    _, garden, _ = fake_garden
    handle = create(garden)
    for kind in ("memory", "cpu", "bandwidth", "disk"):
        reply = garden.call("GET", f"/containers/{handle}/limits/{kind}")
        assert (reply.status, reply.body) == (200, b"{}\n"), kind


def test_a_limit_the_driver_refuses_leaves_nothing_behind(fake_garden):
    """The fake limits driver cannot limit pids (drivers.LimitsDriver's default)."""
    srv, garden, warden = fake_garden
    message = refused(garden, handle="p", limits={**FULL_LIMITS, "memory_limits": {
        "limit_in_bytes": 1 << 30}, "pid_limits": {"max": 10}})
    assert message == "the FakeLimits limits driver cannot limit processes"
    nothing_left(srv, garden, warden)
    create(garden, handle="p")  # the handle is free again


def test_a_net_out_rule_the_driver_refuses_leaves_nothing_behind(fake_garden, monkeypatch):
    srv, garden, warden = fake_garden
    monkeypatch.setattr(FakeNetwork, "fail_on", {"net_out"})
    message = refused(garden, netin=[{"host_port": 0, "container_port": 8080}],
                      netout_rules=[{"protocol": 1, "ports": [{"start": 80, "end": 80}]}])
    assert message == "net_out failed on purpose"
    nothing_left(srv, garden, warden)


def test_disk_limits_on_a_server_without_quotas_are_refused(tmp_path):
    address = str(tmp_path / "garden.sock")
    settings = fake_settings(tmp_path, quota={"disk_quota_enabled": False},
                             frontends={"warden": {}, "garden": {"listen_address": address}})
    with running_server(settings, FAKE_DRIVERS, frontends={"warden": WardenServer,
                                                           "garden": GardenFrontEnd}) as srv:
        garden = GardenClient(address)
        message = refused(garden, limits={**FULL_LIMITS, "disk_limits": {"byte_hard": 1 << 20}})
        assert message == ("disk limits need a disk quota: this server has none (drivers.disk "
                           "and quota.disk_quota_enabled)")
        nothing_left(srv, garden, settings.server.unix_domain_path)


def test_net_in_and_net_out_at_create_reach_the_core(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden, netin=[{"host_port": 0, "container_port": 8080},
                                   {"host_port": 31000, "container_port": 0}],
                    netout_rules=[{"networks": [{"start": "8.8.8.8", "end": "8.8.8.8"}]}])
    c = srv.orchestrator.containers[handle]
    assert c.net_in_rules == [[30000, 8080], [31000, 31000]]  # the pool starts at 30000
    assert c.ports == [30000]  # only the pool's port is the container's to give back
    assert c.net_out_rules == [{"network": "8.8.8.8/32", "port": None, "port_range": None,
                                "protocol": "all", "icmp_type": None, "icmp_code": None,
                                "log": False}]


# -------------------------------------------------------------------- destroy and stop

def test_destroy_answers_empty_and_the_handle_is_gone(fake_garden):
    srv, garden, warden = fake_garden
    handle = create(garden)
    reply = garden.call("DELETE", f"/containers/{handle}")
    assert (reply.status, reply.body) == (200, b"{}\n")
    again = garden.call("DELETE", f"/containers/{handle}")
    assert again.status == 404 and again.json()["Handle"] == handle
    nothing_left(srv, garden, warden)


@pytest.mark.parametrize("kill", [True, False])
def test_stop_ends_every_process_and_info_says_stopped(fake_garden, kill):
    _, garden, warden_socket = fake_garden
    handle = create(garden)
    with Client(warden_socket) as warden:
        job = warden.spawn(handle=handle, script=b"sleep 60").job_id
        assert garden.call("GET", f"/containers/{handle}/info").json()["ProcessIDs"] == [str(job)]
        started = time.monotonic()
        reply = garden.call("PUT", f"/containers/{handle}/stop", {"kill": kill})
        assert (reply.status, reply.body) == (200, b"{}\n")
        assert time.monotonic() - started < 5  # sleep dies of TERM too: no 10 s wait
        assert warden.link(handle=handle, job_id=job).exit_status == 255
    info = garden.call("GET", f"/containers/{handle}/info").json()
    assert info["State"] == "stopped" and info["ProcessIDs"] == []


# ------------------------------------------------------------------- info and metrics

def is_local_address(text: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((text, 0))
        except OSError:
            return False
    return True


def test_info_is_the_exact_container_info(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden, properties={"a": "1"}, netin=[{"container_port": 8080}])
    reply = garden.call("GET", f"/containers/{handle}/info")
    assert reply.status == 200
    info = reply.json()
    c = srv.orchestrator.containers[handle]
    assert ipaddress.IPv4Address(info["ExternalIP"]) and is_local_address(info["ExternalIP"])
    assert info == {"State": "active", "Events": [], "HostIP": "10.98.0.1",
                    "ContainerIP": "10.98.0.2", "ExternalIP": info["ExternalIP"],
                    "ContainerPath": str(srv.orchestrator.depot / c.id), "ProcessIDs": [],
                    "Properties": {"a": "1"},
                    "MappedPorts": [{"HostPort": 30000, "ContainerPort": 8080}]}


def test_info_of_a_container_made_through_warden(fake_garden):
    _, garden, warden_socket = fake_garden
    with Client(warden_socket) as warden:
        handle = warden.create().handle.decode()
        info = garden.call("GET", f"/containers/{handle}/info").json()
    assert info["State"] == "active" and info["Properties"] == {}
    assert info["MappedPorts"] == [] and info["ProcessIDs"] == []
    assert garden.call("GET", f"/containers/{handle}/properties").json() == {}
    for kind in ("memory", "cpu", "bandwidth", "disk"):
        assert garden.call("GET", f"/containers/{handle}/limits/{kind}").json() == {}


def test_metrics_has_every_garden_field(fake_garden):
    _, garden, _ = fake_garden
    handle = create(garden)
    first = garden.call("GET", f"/containers/{handle}/metrics").json()
    time.sleep(0.05)
    second = garden.call("GET", f"/containers/{handle}/metrics").json()
    assert list(first) == ["MemoryStat", "CPUStat", "DiskStat", "NetworkStat", "PidStat",
                           "Age", "CPUEntitlement"]
    assert len(first["MemoryStat"]) == 29 and "TotalUsageTowardLimit" in first["MemoryStat"]
    assert first["CPUStat"] == {"Usage": 0, "User": 0, "System": 0}  # the fakes count nothing
    assert first["NetworkStat"] is None  # ... and have no veth
    assert second["Age"] - first["Age"] >= 50_000_000
    # Guardian's default entitlement: 1024 shares * cores / MiB of memory, per ns of age
    with open("/proc/meminfo") as f:
        mib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:")) / 1024
    expected = 1024 * (os.cpu_count() or 1) / mib * second["Age"]
    assert abs(second["CPUEntitlement"] - expected) <= 1


def test_bulk_info_answers_each_handle_and_errors_in_err(fake_garden):
    _, garden, _ = fake_garden
    a, b = create(garden, properties={"n": "a"}), create(garden, properties={"n": "b"})
    reply = garden.call("GET", "/containers/bulk_info", query={"handles": f"{a},nope,{b}"})
    assert reply.status == 200
    body = reply.json()
    assert list(body) == [a, "nope", b]
    assert body[a]["Err"] is None and body[a]["Info"]["Properties"] == {"n": "a"}
    assert body[b]["Info"] == garden.call("GET", f"/containers/{b}/info").json()
    assert body["nope"] == {
        "Info": {"State": "", "Events": None, "HostIP": "", "ContainerIP": "", "ExternalIP": "",
                 "ContainerPath": "", "ProcessIDs": None, "Properties": None,
                 "MappedPorts": None},
        "Err": {"Type": "ContainerNotFoundError", "Message": "unknown handle: nope",
                "Handle": "nope", "ProcessID": ""}}
    assert garden.call("GET", "/containers/bulk_info", query={"handles": ""}).json() == {}
    assert garden.call("GET", "/containers/bulk_info").json() == {}


def test_bulk_metrics_answers_each_handle_and_errors_in_err(fake_garden):
    _, garden, _ = fake_garden
    a = create(garden)
    body = garden.call("GET", "/containers/bulk_metrics", query={"handles": f"{a},gone"}).json()
    assert body[a]["Err"] is None and body[a]["Metrics"]["Age"] > 0
    assert body["gone"]["Err"] == {"Type": "ContainerNotFoundError",
                                   "Message": "unknown handle: gone", "Handle": "gone",
                                   "ProcessID": ""}
    zero = body["gone"]["Metrics"]
    assert zero["Age"] == 0 and zero["NetworkStat"] is None
    assert set(zero["MemoryStat"].values()) == {0} and len(zero["MemoryStat"]) == 29


# ----------------------------------------------------------------------------- network

def test_net_in_takes_a_pool_port_for_zero_and_maps_it(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden)
    path = f"/containers/{handle}/net/in"
    first = garden.call("POST", path, {"handle": handle, "container_port": 8080})
    assert (first.status, first.json()) == (200, {"host_port": 30000, "container_port": 8080})
    second = garden.call("POST", path, {"handle": handle, "host_port": 31500})
    assert second.json() == {"host_port": 31500, "container_port": 31500}
    assert garden.call("GET", f"/containers/{handle}/info").json()["MappedPorts"] == [
        {"HostPort": 30000, "ContainerPort": 8080}, {"HostPort": 31500, "ContainerPort": 31500}]
    assert srv.orchestrator.containers[handle].ports == [30000]


def core_rule(**fields) -> dict:
    return {"network": "0.0.0.0/0", "port": None, "port_range": None, "protocol": "all",
            "icmp_type": None, "icmp_code": None, "log": False, **fields}


def test_net_out_makes_one_core_rule_per_network_and_port_range(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden)
    rule = {"protocol": 1, "log": True,
            "networks": [{"start": "10.0.0.0", "end": "10.0.0.255"},
                         {"start": "10.1.0.5", "end": "10.1.0.9"}],
            "ports": [{"start": 80, "end": 80}, {"start": 8000, "end": 8080}]}
    reply = garden.call("POST", f"/containers/{handle}/net/out", rule)
    assert (reply.status, reply.body) == (200, b"{}\n")
    assert srv.orchestrator.containers[handle].net_out_rules == [
        core_rule(network=net, port_range=ports, protocol="tcp", log=True)
        for net in ("10.0.0.0/24", "10.1.0.5-10.1.0.9") for ports in ("80", "8000:8080")]


def test_net_out_icmp_codes_absent_and_zero_differ(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden)
    path = f"/containers/{handle}/net/out"
    garden.call("POST", path, {"protocol": 3, "icmps": {"type": 8}})
    garden.call("POST", path, {"protocol": 3, "icmps": {"type": 0, "code": 0}})
    garden.call("POST", path, {"protocol": 2})
    assert srv.orchestrator.containers[handle].net_out_rules == [
        core_rule(protocol="icmp", icmp_type=8), core_rule(protocol="icmp", icmp_type=0,
                                                           icmp_code=0),
        core_rule(protocol="udp")]


@pytest.mark.parametrize("rule, expected", [
    ({"protocol": 3, "ports": [{"start": 1, "end": 2}]},
     "rule: ports need protocol tcp (1) or udp (2), not icmp"),
    ({"protocol": 7}, "rule.protocol: 7 is not one of 0 (all), 1 (tcp), 2 (udp), 3 (icmp)"),
    ({"networks": [{"start": "10.0.0.9", "end": "10.0.0.1"}]},
     "rule.networks[0]: end 10.0.0.1 is before start 10.0.0.9"),
    ({"networks": [{"start": "300.0.0.1"}]},
     "rule.networks[0]: Octet 300 (> 255) not permitted in '300.0.0.1'"),
    ({"protocol": 1, "ports": [{"start": 0}]}, "rule.ports[0]: start must be a port, 1..65535"),
])
def test_net_out_refuses_a_malformed_rule_and_records_nothing(fake_garden, rule, expected):
    srv, garden, _ = fake_garden
    handle = create(garden)
    reply = garden.call("POST", f"/containers/{handle}/net/out", rule)
    assert reply.status == 500 and reply.json()["Message"] == expected
    assert srv.orchestrator.containers[handle].net_out_rules == []


def test_bulk_net_out_takes_a_bare_array_whole_or_not_at_all(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden)
    path = f"/containers/{handle}/net/out/bulk"
    bad = garden.call("POST", path, [{"protocol": 2}, {"protocol": 9}])
    assert bad.status == 500 and bad.json()["Message"].startswith("[1].protocol: 9")
    assert srv.orchestrator.containers[handle].net_out_rules == []
    good = garden.call("POST", path, [{"protocol": 2}, {"protocol": 1, "ports": [{"start": 22}]}])
    assert (good.status, good.body) == (200, b"{}\n")
    assert srv.orchestrator.containers[handle].net_out_rules == [
        core_rule(protocol="udp"), core_rule(protocol="tcp", port_range="22")]
    not_array = garden.call("POST", path, {"protocol": 1})
    assert not_array.status == 400


# -------------------------------------------------------------- grace time, properties

def test_set_grace_time_takes_a_bare_number_of_nanoseconds(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden)
    path = f"/containers/{handle}/grace_time"
    reply = garden.call("PUT", path, raw=b"30000000000\n")
    assert (reply.status, reply.body) == (200, b"{}\n")
    assert srv.orchestrator.containers[handle].grace_time == 30.0
    garden.call("PUT", path, raw=b"0\n")
    assert srv.orchestrator.containers[handle].grace_time is None  # never reaped
    assert garden.call("PUT", path, {"grace_time": 1}).status == 400


def test_a_container_no_request_touches_is_reaped_after_its_grace_time(fake_garden):
    _, garden, _ = fake_garden
    kept = create(garden)
    short = create(garden, grace_time=NS // 5)
    reset = create(garden)
    garden.call("PUT", f"/containers/{reset}/grace_time", raw=b"300000000\n")
    wait_for(lambda: garden.call("GET", "/containers").json()["Handles"] == [kept])
    assert garden.call("GET", f"/containers/{short}/info").status == 404


def test_properties_set_read_and_removed(fake_garden):
    srv, garden, _ = fake_garden
    handle = create(garden, properties={"a": "1"})
    path = f"/containers/{handle}/properties"
    reply = garden.call("PUT", f"{path}/b", {"value": "two"})
    assert (reply.status, reply.body) == (200, b"{}\n")
    assert garden.call("GET", path).json() == {"a": "1", "b": "two"}
    assert garden.call("GET", f"{path}/b").json() == {"value": "two"}
    assert garden.call("DELETE", f"{path}/a").body == b"{}\n"
    assert garden.call("DELETE", f"{path}/never").status == 200  # no error, as Guardian
    assert garden.call("GET", path).json() == {"b": "two"}
    missing = garden.call("GET", f"{path}/a")
    assert missing.status == 500 and missing.json()["Message"] == "property does not exist: a"
    assert srv.orchestrator.containers[handle].properties == {"b": "two"}
    assert garden.call("PUT", f"{path}/c", {}).status == 400


# --------------------------------------------------------------------- unknown handles

PER_CONTAINER = [
    ("DELETE", "/containers/:handle", None), ("PUT", "/containers/:handle/stop", {"kill": True}),
    ("GET", "/containers/:handle/info", None), ("GET", "/containers/:handle/metrics", None),
    ("GET", "/containers/:handle/limits/bandwidth", None),
    ("GET", "/containers/:handle/limits/cpu", None),
    ("GET", "/containers/:handle/limits/disk", None),
    ("GET", "/containers/:handle/limits/memory", None),
    ("POST", "/containers/:handle/net/in", {"container_port": 80}),
    ("POST", "/containers/:handle/net/out", {"protocol": 1}),
    ("POST", "/containers/:handle/net/out/bulk", [{"protocol": 1}]),
    ("PUT", "/containers/:handle/grace_time", 5),
    ("GET", "/containers/:handle/properties", None),
    ("GET", "/containers/:handle/properties/:key", None),
    ("PUT", "/containers/:handle/properties/:key", {"value": "v"}),
    ("DELETE", "/containers/:handle/properties/:key", None),
]


@pytest.mark.parametrize("method, template, body", PER_CONTAINER,
                         ids=[f"{m} {t}" for m, t, _ in PER_CONTAINER])
def test_every_per_container_route_answers_404_for_an_unknown_handle(fake_garden, method,
                                                                     template, body):
    _, garden, _ = fake_garden
    reply = garden.call(method, GardenClient.path(template, handle="no such", key="k"), body)
    assert reply.status == 404
    assert reply.json() == {"Type": "ContainerNotFoundError", "Message": "unknown handle: no such",
                            "Handle": "no such", "ProcessID": ""}


# ------------------------------------------------------------ both front ends, one core

def test_a_garden_container_is_listed_inspected_and_destroyed_through_warden(fake_garden):
    _, garden, warden_socket = fake_garden
    handle = create(garden, handle="from-garden", netin=[{"host_port": 31001}])
    with Client(warden_socket) as warden:
        assert [h.decode() for h in warden.list().handles] == [handle]
        info = warden.info(handle=handle)
        assert (info.state, info.container_ip) == ("active", "10.98.0.2")
        warden.destroy(handle=handle)
        with pytest.raises(ServerError, match="unknown handle"):
            warden.info(handle=handle)
    assert garden.call("GET", f"/containers/{handle}/info").status == 404
    assert garden.call("GET", "/containers").json() == {"Handles": []}


def test_a_warden_container_is_listed_inspected_and_destroyed_through_garden(fake_garden):
    _, garden, warden_socket = fake_garden
    with Client(warden_socket) as warden:
        handle = warden.create(handle="from-warden").handle.decode()
        job = warden.spawn(handle=handle, script=b"sleep 60").job_id
        assert garden.call("GET", "/containers").json() == {"Handles": [handle]}
        info = garden.call("GET", f"/containers/{handle}/info").json()
        assert info["ProcessIDs"] == [str(job)] and info["State"] == "active"
        assert garden.call("PUT", f"/containers/{handle}/properties/p", {"value": "v"}).status \
            == 200
        assert garden.call("GET", "/containers", query={"p": "v"}).json() == \
            {"Handles": [handle]}
        assert garden.call("DELETE", f"/containers/{handle}").status == 200
        assert list(warden.list().handles) == []
