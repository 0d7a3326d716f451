"""IptablesDriver's hooks on the real kernel, called by keyword as pluggy calls them: a
network namespace made by the test stands in for the container's init, the host chains
carry this module's unique prefix, and every container is torn down after its test."""

from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from warden_framework.config import Settings, settings_from_dict
from warden_framework.container import Container
from warden_framework.errors import DriverError, WardenError
from warden_iptables_net import chains, kernel, network, shaping, veth
from warden_iptables_net.driver import IptablesDriver

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, veths, iptables"),
]


def driver_settings(prefix: str, pool: object) -> Settings:
    """Settings whose host part matches what the `host` fixture set up (no allow/deny)."""
    return settings_from_dict({"server": {"name_prefix": prefix},
                               "network": {"pool_network": str(pool)}})


@pytest.fixture
def settings(host) -> Settings:
    return driver_settings(host.prefix, host.pool)


@pytest.fixture
def driver(settings: Settings) -> IptablesDriver:
    return IptablesDriver(settings)


@pytest.fixture
def new_container(host, netns, view, tmp_path: Path) -> Iterator[Callable[[], Container]]:
    """Factory of containers before setup_net: an id, a /30 and a netns held by `sleep`.

    Whatever setup_net made for them is removed after the test, by name.
    """
    made: list[Container] = []

    def make() -> Container:
        cid = view.unique_id()
        box = Container(id=cid, handle=f"h-{cid}", path=tmp_path / cid,
                        network=next(host.subnets), records={"exec": {"pid": netns()}})
        made.append(box)
        return box

    yield make
    for box in made:
        network.teardown_container(host.prefix, box.id)


@pytest.fixture
def container(driver, settings, new_container) -> Container:
    """A container after setup_net, its record kept where the orchestrator keeps it."""
    box = new_container()
    box.records["network"] = driver.setup_net(container=box, settings=settings)
    return box


def init_pid(box: Container) -> int:
    return box.records["exec"]["pid"]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------ host

def test_hook_setup_host_twice_changes_no_rule_and_keeps_containers(driver, settings,
                                                                    container, view) -> None:
    before = view.rules_with(driver.prefix)
    driver.setup_host(settings=settings)
    driver.setup_host(settings=settings)
    after = view.rules_with(driver.prefix)
    assert after == before
    assert len([r for r in after if f"-A FORWARD -i w-+ -j {driver.prefix}-forward" in r]) == 1
    assert kernel.link_group(f"w-{container.id}-0") == chains.device_group(driver.prefix)
    with open(kernel.IP_FORWARD) as f:
        assert f.read().strip() == "1"


def test_hook_teardown_host_removes_its_prefix_and_its_containers(host, netns, view,
                                                                  tmp_path) -> None:
    prefix = f"u{secrets.token_hex(3)}"  # a second server beside the module's
    settings = driver_settings(prefix, host.spare)
    other = IptablesDriver(settings)
    cid = view.unique_id()
    box = Container(id=cid, handle=f"h-{cid}", path=tmp_path / cid,
                    network=next(host.spare.subnets(new_prefix=30)),
                    records={"exec": {"pid": netns()}})
    try:
        other.setup_host(settings=settings)
        box.records["network"] = other.setup_net(container=box, settings=settings)
        other.net_in(container=box, host_port=random.randrange(40000, 50000), container_port=8080)
        assert view.rules_with(f"-N {prefix}-i-{cid}")
        other.teardown_host(settings=settings)
        assert view.rules_with(prefix) == []
        assert view.links_with(cid) == []
        assert view.rules_with(f"-N {host.prefix}-forward"), "the module's server was touched"
        other.teardown_host(settings=settings)  # idempotent
    finally:
        network.teardown_host(prefix)
        network.teardown_container(prefix, cid)


# ------------------------------------------------------------------- setup, teardown

def test_hook_setup_net_connects_the_container_and_records_its_links(
        driver, settings, new_container, servers, connect, view) -> None:
    box = new_container()
    record = driver.setup_net(container=box, settings=settings)
    assert record["container_ip"] == box.container_ip and record["host_ip"] == box.host_ip
    assert record["host_iface"] == chains.host_iface(box.id)
    assert record["mtu"] == settings.network.mtu
    assert chains.host_iface(box.id) in view.links_with(box.id)
    assert chains.ifb_iface(box.id) not in view.links_with(box.id), "ifb before any shaping"
    assert f"inet {box.container_ip}/30" in view.in_ns(init_pid(box), "ip", "-o", "addr")
    assert kernel.link_group(f"w-{box.id}-0") == chains.device_group(driver.prefix)
    server = servers(init_pid(box), box.container_ip, token="inside")
    assert connect(None, box.container_ip, server.port) == "inside"


def test_hook_setup_net_into_a_dead_init_fails_naming_the_container(
        driver, settings, new_container, view) -> None:
    box = new_container()
    box.records["exec"] = {"pid": dead_pid()}
    with pytest.raises(DriverError, match=f"^set up network of {box.id}: "):
        driver.setup_net(container=box, settings=settings)
    assert view.links_with(box.id) == []


def test_hook_teardown_net_removes_links_and_chains_and_twice_is_harmless(
        driver, container, view, host) -> None:
    driver.net_in(container=container, host_port=random.randrange(40000, 50000),
                  container_port=8080)
    driver.net_out(container=container, rule={"network": host.outside_ip, "port": 53})
    driver.limit_bandwidth(container=container, rate=100000, burst=1000)
    driver.teardown_net(container=container, record=container.records["network"])
    assert view.rules_with(container.id) == []
    assert view.links_with(container.id) == []
    driver.teardown_net(container=container, record=container.records["network"])
    assert view.rules_with(f"-N {driver.prefix}-forward"), "host chains must stay"


def test_hook_teardown_net_without_record_after_setup_net_failed_halfway(
        driver, settings, new_container, view, monkeypatch) -> None:
    box = new_container()

    def init_gone(*_) -> None:
        raise kernel.KernelError("the container's init died")

    monkeypatch.setattr(kernel, "configure_in_netns", init_gone)
    with pytest.raises(DriverError, match="init died"):
        driver.setup_net(container=box, settings=settings)
    assert chains.host_iface(box.id) in view.links_with(box.id), "the veth was made"
    driver.teardown_net(container=box, record=None)
    assert view.rules_with(box.id) == []
    assert view.links_with(box.id) == []


# ------------------------------------------------------------------ net_in, net_out

def test_hook_net_in_forwards_a_host_port_to_the_container(driver, container, servers,
                                                          connect, host) -> None:
    servers(init_pid(container), "0.0.0.0", 8080, token="inside")
    host_port = random.randrange(40000, 50000)
    record = driver.net_in(container=container, host_port=host_port, container_port=8080)
    assert record == {"host_port": host_port, "container_port": 8080}
    assert connect(None, container.host_ip, host_port) == "inside"
    assert connect(host.outside_pid, host.outside_host_ip, host_port) == "inside"


@pytest.mark.parametrize("host_port, container_port, message", [
    (0, 8080, "Invalid host port: 0 (must be 1..65535)"),
    (40000, 65536, "Invalid container port: 65536 (must be 1..65535)"),
])
def test_hook_net_in_refuses_a_bad_port_and_adds_no_rule(driver, container, view,
                                                         host_port, container_port,
                                                         message) -> None:
    before = view.rules_with(container.id)
    with pytest.raises(WardenError) as info:
        driver.net_in(container=container, host_port=host_port, container_port=container_port)
    assert type(info.value) is WardenError and str(info.value) == message
    assert view.rules_with(container.id) == before


def test_hook_net_out_opens_only_the_requested_destination(driver, container, servers,
                                                           connect, host) -> None:
    wanted = servers(host.outside_pid, host.outside_ip, token="wanted")
    other = servers(host.outside_pid, host.outside_ip, token="other")
    assert connect(init_pid(container), host.outside_ip, wanted.port) == "refused"
    resource = driver.net_out(container=container,
                              rule={"network": f"{host.outside_ip}/32", "port": wanted.port})
    assert resource == [f"{host.outside_ip}/32", str(wanted.port), "tcp", None, None, False]
    assert connect(init_pid(container), host.outside_ip, wanted.port) == "wanted"
    assert connect(init_pid(container), host.outside_ip, other.port) == "refused"


def test_hook_net_out_refuses_an_empty_rule_with_wardens_text(driver, container,
                                                              view) -> None:
    before = view.rules_with(container.id)
    with pytest.raises(WardenError) as info:
        driver.net_out(container=container, rule={"protocol": "tcp"})
    assert str(info.value) == "Please specify network, port, and/or port_range."
    assert view.rules_with(container.id) == before


# ------------------------------------------------------------------------- bandwidth

def test_hook_limit_bandwidth_sets_both_directions_and_reads_back(driver, container) -> None:
    none = shaping.NO_LIMIT
    assert driver.limit_bandwidth(container=container, rate=None, burst=None) == (none, none)
    assert driver.limit_bandwidth(container=container, rate=100000, burst=1000) == (100000, 1000)
    assert driver.limit_bandwidth(container=container, rate=None, burst=None) == (100000, 1000)
    assert driver.info(container=container)["bandwidth_stat"] == {
        "in_rate": 100000, "in_burst": 1000, "out_rate": 100000, "out_burst": 1000}


def test_hook_info_before_any_shaping_reports_no_limit_and_makes_no_ifb(driver, container,
                                                                        view) -> None:
    none = shaping.NO_LIMIT
    assert driver.info(container=container)["bandwidth_stat"] == {
        "in_rate": none, "in_burst": none, "out_rate": none, "out_burst": none}
    assert chains.ifb_iface(container.id) not in view.links_with(container.id)


def test_hook_info_counts_the_bytes_through_the_veth_as_the_container_sees_them(
        driver, container) -> None:
    """network_stat: what the host end sends the container receives (Garden's NetworkStat)."""
    before = driver.info(container=container)["network_stat"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(10):
            sock.sendto(b"x" * 1000, (container.container_ip, 9))
    after = driver.info(container=container)["network_stat"]
    assert after["rx_bytes"] - before["rx_bytes"] >= 10 * 1000
    assert after["tx_bytes"] >= before["tx_bytes"]


def test_hook_limit_bandwidth_refused_keeps_the_previous_shaping(driver, container) -> None:
    driver.limit_bandwidth(container=container, rate=200000, burst=2000)
    with pytest.raises(WardenError, match="bandwidth rate must be 1.."):
        driver.limit_bandwidth(container=container, rate=0, burst=2000)
    assert shaping.read_bandwidth(container.id) == (200000, 2000, 200000, 2000)


# --------------------------------------------------------------------------- recover

def test_hook_recover_restores_recorded_rules_deleted_behind_its_back(
        driver, settings, container, servers, connect, host) -> None:
    servers(init_pid(container), "0.0.0.0", 8080, token="inside")
    outside = servers(host.outside_pid, host.outside_ip, token="outside")
    host_port = random.randrange(40000, 50000)
    driver.net_in(container=container, host_port=host_port, container_port=8080)
    container.net_in_rules.append([host_port, 8080])
    container.net_out_rules.append(driver.net_out(
        container=container, rule={"network": host.outside_ip, "port": outside.port}))
    network.teardown_chains(driver.prefix, container.id)
    assert connect(None, container.host_ip, host_port) == "refused"
    driver.recover(container=container, settings=settings)
    assert connect(None, container.host_ip, host_port) == "inside"
    assert connect(init_pid(container), host.outside_ip, outside.port) == "outside"


def test_hook_recover_fails_when_the_host_veth_is_gone(driver, settings, container) -> None:
    veth.teardown_links(container.id)
    with pytest.raises(DriverError, match=f"host interface w-{container.id}-0 .* is gone"):
        driver.recover(container=container, settings=settings)
