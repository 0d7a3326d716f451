"""Integration: the real kernel, namespaces as containers and as "outside", TCP between
them. Needs root; every object is named after this run's prefix and ids."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import subprocess
from ipaddress import IPv4Network

import pytest

from warden_iptables_net import chains, kernel, network, rules, shaping, veth

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, veths, iptables"),
]


def allow_out(prefix: str, cid: str, **request) -> None:
    network.net_out(prefix, cid, rules.parse_net_out(**request))


# ---------------------------------------------------------------------- host setup

def test_setup_host_twice_adds_no_rule(host, containers, view) -> None:
    box, chained = containers(), containers()
    allow_out(host.prefix, chained.id, port=80)
    before = view.rules_with(host.prefix)  # every rule of ours names a chain of ours
    host.setup()
    after = view.rules_with(host.prefix)
    assert after == before
    for hook in (f"-A FORWARD -i w-+ -j {host.prefix}-forward",
                 f"-A FORWARD -o w-+ -j {host.prefix}-ingress",
                 f"-A INPUT -i w-+ -j {host.prefix}-input",
                 f"raw -A PREROUTING -i w-+ -j {host.prefix}-antispoof",
                 f"nat -A PREROUTING -j {host.prefix}-prerouting",
                 f"-j {host.prefix}-postrouting",
                 f"--comment {host.prefix}-block-traffic-to-host"):
        assert len([line for line in after if hook in line]) == 1, hook
    assert len([line for line in after if f"--comment {host.prefix}-ipv6-guard" in line]) == 2
    group = hex(chains.device_group(host.prefix))
    for chain, target in (("forward", "default"), ("input", "host")):
        assert len(view.rules_with(f"-A {host.prefix}-{chain} -m devgroup --src-group {group} "
                                   f"-g {host.prefix}-{target}")) == 1
    # the chained container kept its goto; the other one has no rule of its own
    assert len(view.rules_with(f"-i w-{chained.id}-0 -g {host.prefix}-i-{chained.id}")) == 1
    assert view.rules_with(box.id) == []


def test_setup_host_enables_forwarding(host) -> None:
    with open(kernel.IP_FORWARD) as f:
        assert f.read().strip() == "1"


def test_list_container_ids_lists_chains_present(host, containers) -> None:
    first, second = containers(), containers()
    assert {first.id, second.id} <= set(network.list_container_ids(host.prefix))
    network.teardown_container(host.prefix, first.id)
    assert first.id not in network.list_container_ids(host.prefix)


def test_a_container_without_host_chains_fails_before_its_links(netns, view) -> None:
    cid = view.unique_id()
    with pytest.raises(kernel.KernelError, match="run setup_host first"):
        network.setup_container(f"u{secrets.token_hex(3)}", cid, netns(),
                                IPv4Network("10.251.0.4/30"), 1500)
    with pytest.raises(kernel.KernelError, match="run setup_host first"):
        network.recover_chains(f"u{secrets.token_hex(3)}", cid)
    assert view.links_with(cid) == []


def test_setup_host_moves_the_containers_of_a_server_without_device_groups(
        host, netns, view) -> None:
    """A restart onto this version: the live containers' veths were made without a group,
    each with a forward and an input goto and an anti-spoofing rule of its own. setup_host
    puts the veths in the group and replaces their rules; a chained container keeps its
    goto; then neither container has a rule naming it, nor does the chained one need one."""
    plain, chained = view.unique_id(), view.unique_id()
    made = {cid: veth.setup_links(cid, netns(), next(host.subnets), 1500)
            for cid in (plain, chained)}
    forward, instance = chains.forward_chain(host.prefix), chains.instance_chain(host.prefix,
                                                                                chained)
    try:
        with kernel.iptables() as ipt:
            ipt.ensure_chain(chains.FILTER, instance)
            ipt.append(chains.FILTER, instance, chains.Rule(chains.default_chain(host.prefix),
                                                            goto=True))
            for cid, record in made.items():
                iface = chains.host_iface(cid)
                target = instance if cid == chained else chains.default_chain(host.prefix)
                ipt.insert(chains.FILTER, forward, chains.Rule(target, goto=True, in_iface=iface))
                ipt.append(chains.FILTER, chains.input_chain(host.prefix), chains.Rule(
                    chains.host_chain(host.prefix), goto=True, in_iface=iface))
                ipt.append(chains.RAW, chains.antispoof_chain(host.prefix), chains.Rule(
                    "DROP", in_iface=iface, src=f"!{record['container_ip']}/32"))
        assert kernel.link_group(chains.host_iface(plain)) == 0
        host.setup()
        for cid in (plain, chained):
            assert kernel.link_group(chains.host_iface(cid)) == chains.device_group(host.prefix)
        assert view.rules_with(plain) == []
        assert view.rules_with(f"-A {forward} -i ") == [
            f"filter -A {forward} -i w-{chained}-0 -g {instance}"]
        assert set(network.list_container_ids(host.prefix)) >= {plain, chained}
    finally:
        for cid in (plain, chained):
            network.teardown_container(host.prefix, cid)
    assert view.rules_with(chained) == [] and view.links_with(plain) == []


# --------------------------------------------------------------------------- links

def test_container_links_are_addressed_and_up(host, containers, view) -> None:
    box = containers(mtu=1454)
    net = IPv4Network(box.record["network"])
    inner = chains.container_iface(box.id)
    assert f"inet {net.network_address + 2}/30" in view.in_ns(box.pid, "ip", "-o", "addr",
                                                                "show", "dev", inner)
    assert f"default via {net.network_address + 1}" in view.in_ns(box.pid, "ip", "route")
    links = view.in_ns(box.pid, "ip", "-o", "link")
    assert "lo: <LOOPBACK,UP" in links
    assert "mtu 1454" in links.split(inner)[1].splitlines()[0]
    assert f"inet {net.network_address + 1}/30" in view.run(
        "ip", "-o", "addr", "show", "dev", chains.host_iface(box.id))
    shaping.limit_bandwidth(box.id, 100000, 1000)  # makes the ifb, with the veth's MTU
    for name in (chains.host_iface(box.id), chains.ifb_iface(box.id)):
        assert kernel.link_mtu(name) == 1454
        assert ",UP" in view.run("ip", "-o", "link", "show", "dev", name)


def test_container_veth_goes_with_its_netns(host, netns, view) -> None:
    cid = view.unique_id()
    pid = netns()
    try:
        network.setup_container(host.prefix, cid, pid, next(host.subnets), 1500)
        os.kill(pid, 9)
        view.wait_for(lambda: chains.host_iface(cid) not in kernel.link_names(),
                      "the host veth to go with the netns")
    finally:
        network.teardown_container(host.prefix, cid)
    assert view.links_with(cid) == []


def test_netlink_refusals_name_the_request_and_the_kernels_reason(host, netns, view) -> None:
    cid = view.unique_id()
    host_end, peer = chains.host_iface(cid), chains.container_iface(cid)
    pid = netns()
    try:
        kernel.create_veth(host_end, peer, pid, 1500, "10.251.0.1", 30)
        with pytest.raises(kernel.KernelError, match=rf"^netlink: add veth {host_end} .*File exists$"):
            kernel.create_veth(host_end, peer, pid, 1500, "10.251.0.1", 30)
        with pytest.raises(kernel.KernelError, match=r"^netlink: no link named w-nosuch$"):
            kernel.configure_in_netns(pid, "w-nosuch", "10.251.0.2", 30, "10.251.0.1")
        assert kernel.delete_link(host_end) is True
        assert kernel.delete_link(host_end) is False
    finally:
        kernel.delete_link(host_end)
    assert view.links_with(cid) == []


def test_link_counters_kept_open_see_a_link_go_and_a_new_one_come(host, netns, view) -> None:
    counters = kernel.LinkCounters()
    cid = view.unique_id()
    host_end, peer = chains.host_iface(cid), chains.container_iface(cid)
    try:
        kernel.create_veth(host_end, peer, netns(), 1500, "10.251.0.1", 30)
        assert counters.read(host_end) is not None
        kernel.delete_link(host_end)
        assert counters.read(host_end) is None
        kernel.create_veth(host_end, peer, netns(), 1500, "10.251.0.1", 30)
        assert counters.read(host_end) is not None
        kernel.delete_link(host_end)  # and made again while its files are kept
        kernel.create_veth(host_end, peer, netns(), 1500, "10.251.0.1", 30)
        assert counters.read(host_end) is not None
        counters.forget(host_end)
    finally:
        kernel.delete_link(host_end)
    assert view.links_with(cid) == []


def _deleted_links(monkeypatch) -> list[str]:
    """Record the names delete_link is called with (it still deletes)."""
    names: list[str] = []
    delete = kernel.delete_link

    def recording(ifname: str) -> bool:
        names.append(ifname)
        return delete(ifname)

    monkeypatch.setattr(kernel, "delete_link", recording)
    return names


def test_teardown_after_the_netns_holder_died_lets_the_kernel_take_the_veth(
        host, netns, view, monkeypatch) -> None:
    cid = view.unique_id()
    pid = netns()
    deleted = _deleted_links(monkeypatch)
    try:
        record = network.setup_container(host.prefix, cid, pid, next(host.subnets), 1500)
        assert record["netns_pid"] == pid
        os.kill(pid, 9)
        view.wait_for(lambda: not kernel.process_alive(pid), "the netns holder to die")
        network.teardown_container(host.prefix, cid, pid)
        assert view.links_with(cid) == []
        assert chains.host_iface(cid) not in deleted
    finally:
        network.teardown_container(host.prefix, cid)


def test_teardown_deletes_a_veth_whose_netns_outlives_its_holder(
        host, netns, view, monkeypatch) -> None:
    cid = view.unique_id()
    pid = netns()
    monkeypatch.setattr(veth, "NETNS_GONE_WAIT", 0.05)
    deleted = _deleted_links(monkeypatch)
    held = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        network.setup_container(host.prefix, cid, pid, next(host.subnets), 1500)
        os.kill(pid, 9)
        view.wait_for(lambda: not kernel.process_alive(pid), "the netns holder to die")
        network.teardown_container(host.prefix, cid, pid)
        assert view.links_with(cid) == []
        assert chains.host_iface(cid) in deleted
    finally:
        os.close(held)
        network.teardown_container(host.prefix, cid)


# -------------------------------------------------------------------- connectivity

def test_host_reaches_container_without_host_access(host, containers, servers,
                                                    connect) -> None:
    box = containers()
    server = servers(box.pid, box.ip, token="inside")
    assert connect(None, box.ip, server.port) == "inside"


def test_container_reaches_host_only_with_allow_host_access(host, containers, servers,
                                                            connect) -> None:
    box = containers()
    server = servers(None, box.host_ip, token="host")
    assert connect(box.pid, box.host_ip, server.port) == "refused"
    try:
        host.setup(allow_host_access=True)
        assert connect(box.pid, box.host_ip, server.port) == "host"
    finally:
        host.setup()
    assert connect(box.pid, box.host_ip, server.port) == "refused"


def test_container_cannot_reach_outside_by_default(host, containers, servers,
                                                   connect) -> None:
    box = containers()
    server = servers(host.outside_pid, host.outside_ip, token="outside")
    assert connect(host.outside_pid, host.outside_ip, server.port) == "outside"
    assert connect(box.pid, host.outside_ip, server.port) == "refused"


def test_net_out_opens_only_that_port(host, containers, servers, connect) -> None:
    box = containers()
    wanted = servers(host.outside_pid, host.outside_ip, token="wanted")
    other = servers(host.outside_pid, host.outside_ip, token="other")
    allow_out(host.prefix, box.id, network=f"{host.outside_ip}/32", port=wanted.port)
    assert connect(box.pid, host.outside_ip, wanted.port) == "wanted"
    assert connect(box.pid, host.outside_ip, other.port) == "refused"


def test_net_out_port_range_with_dash_network_and_log(host, containers, servers, connect,
                                                      view) -> None:
    box = containers()
    base = random.randrange(20000, 30000)
    ports = range(base - 1, base + 3)
    for port in ports:
        servers(host.outside_pid, host.outside_ip, port, token=str(port))
    allow_out(host.prefix, box.id, network=f"{host.outside_ip}-{host.outside_ip}",
              port_range=f"{base}:{base + 2}", log=True)
    assert [connect(box.pid, host.outside_ip, p) for p in ports] == \
        ["refused", str(base), str(base + 1), str(base + 2)]
    assert view.rules_with(f"-g {host.prefix}-i-{box.id}-log")


def test_allow_networks_let_every_container_out(host, containers, servers, connect) -> None:
    box = containers()
    server = servers(host.outside_pid, host.outside_ip, token="outside")
    try:
        host.setup(allow_networks=[f"{host.outside_ip}/32"])
        assert connect(box.pid, host.outside_ip, server.port) == "outside"
    finally:
        host.setup()
    assert connect(box.pid, host.outside_ip, server.port) == "refused"


def test_containers_cannot_reach_each_other(host, containers, servers, connect) -> None:
    first, second = containers(), containers()
    server = servers(first.pid, first.ip, token="first")
    assert connect(second.pid, first.ip, server.port) == "refused"
    assert connect(None, first.ip, server.port) == "first"


def test_net_in_reaches_container_from_host_and_outside(host, containers, servers,
                                                        connect) -> None:
    box = containers()
    server = servers(box.pid, "0.0.0.0", 8080, token="inside")
    host_port = random.randrange(40000, 50000)
    network.net_in(host.prefix, box.id, box.ip, host_port, server.port)
    assert connect(None, box.host_ip, host_port) == "inside"
    assert connect(None, host.outside_host_ip, host_port) == "inside"
    assert connect(host.outside_pid, host.outside_host_ip, host_port) == "inside"


def test_net_in_does_not_hijack_the_containers_outbound_traffic(host, containers, servers,
                                                                connect) -> None:
    box = containers()
    servers(box.pid, "0.0.0.0", 8080, token="inside")
    outside = servers(host.outside_pid, host.outside_ip, token="outside")
    network.net_in(host.prefix, box.id, box.ip, outside.port, 8080)
    allow_out(host.prefix, box.id, network=host.outside_ip, port=outside.port)
    assert connect(box.pid, host.outside_ip, outside.port) == "outside"


def test_net_in_and_net_out_need_the_containers_chain(host, view) -> None:
    cid = view.unique_id()
    with pytest.raises(kernel.KernelError, match="no chain"):
        network.net_in(host.prefix, cid, "10.0.0.2", 8080, 8080)
    with pytest.raises(kernel.KernelError, match="no chain"):
        allow_out(host.prefix, cid, port=80)


# ----------------------------------------------------------------------- bandwidth

def test_bandwidth_reads_back_what_was_set(host, containers, view) -> None:
    box = containers()
    none = shaping.NO_LIMIT
    assert shaping.read_bandwidth(box.id) == (none, none, none, none)
    shaping.limit_bandwidth(box.id, 100000, 1000)
    assert shaping.read_bandwidth(box.id) == (100000, 1000, 100000, 1000)
    shaping.limit_bandwidth(box.id, 200000, 2000)
    assert shaping.read_bandwidth(box.id) == (200000, 2000, 200000, 2000)
    ingress = view.run("tc", "filter", "show", "dev", chains.host_iface(box.id), "ingress")
    assert f"Egress Redirect to device {chains.ifb_iface(box.id)}" in ingress


def test_bandwidth_recreates_a_missing_ifb(host, containers) -> None:
    box = containers()
    kernel.delete_link(chains.ifb_iface(box.id))
    shaping.limit_bandwidth(box.id, 300000, 3000)
    assert shaping.read_bandwidth(box.id) == (300000, 3000, 300000, 3000)


def test_bandwidth_of_a_missing_container_fails(view) -> None:
    with pytest.raises(kernel.KernelError, match="no link"):
        shaping.limit_bandwidth(view.unique_id(), 100000, 1000)


# ------------------------------------------------------------------------ teardown

def test_teardown_container_leaves_nothing(host, containers, view) -> None:
    box = containers()
    network.net_in(host.prefix, box.id, box.ip, 8080, 8080)
    allow_out(host.prefix, box.id, network=host.outside_ip, log=True)
    shaping.limit_bandwidth(box.id, 100000, 1000)
    network.teardown_container(host.prefix, box.id)
    assert view.rules_with(box.id) == []
    assert view.links_with(box.id) == []
    network.teardown_container(host.prefix, box.id)  # twice is harmless
    assert view.rules_with(f"-A {host.prefix}-forward -s {host.pool} -j DROP")  # untouched


def test_containers_without_rules_change_no_table(host, containers, view) -> None:
    """Every legacy table is read and written whole on a change: a create and a destroy
    that change none cost the same with any number of containers."""
    before = view.iptables()
    boxes = [containers() for _ in range(3)]
    assert view.iptables() == before
    for box in boxes:
        network.teardown_container(host.prefix, box.id, box.pid)
    assert view.iptables() == before


def test_a_container_gets_its_chains_only_with_its_first_rule_needing_them(
        host, containers, view) -> None:
    """Each table is rewritten whole on a change, at a cost growing with its chains, and
    every inbound packet walks the nat jumps: a container without net_out has no filter
    chain (the group's rule sends it to the default chain), one without net_in adds nothing
    to nat, one without a logging net_out no log chain."""
    box = containers()
    instance = f"{host.prefix}-i-{box.id}"
    assert view.rules_with(box.id) == []
    for port in (8080, 8081):
        network.net_in(host.prefix, box.id, box.ip, port, port)
    assert len(view.rules_with(f"nat -A {host.prefix}-prerouting -j {instance}")) == 1
    assert len(view.rules_with(f"nat -A {instance} ")) == 2
    assert view.rules_with(f"filter -N {instance}") == [], "net_in needs no filter chain"
    allow_out(host.prefix, box.id, network=host.outside_ip)
    assert view.rules_with(f"filter -N {instance}-log") == []
    for _ in range(2):
        allow_out(host.prefix, box.id, network=host.outside_ip, log=True)
    assert len(view.rules_with(f"filter -A {instance}-log ")) == 2  # LOG, RETURN: once
    assert view.rules_with(f"filter -A {host.prefix}-forward -i w-{box.id}-0 ") == [
        f"filter -A {host.prefix}-forward -i w-{box.id}-0 -g {instance}"]
    assert view.rules_with(f"filter -A {instance} -g {host.prefix}-default")


def test_recover_chains_leaves_the_container_as_a_new_one(host, containers, view) -> None:
    """Recovery's first step, before it re-applies the container's rules."""
    box = containers()
    instance = f"{host.prefix}-i-{box.id}"
    network.net_in(host.prefix, box.id, box.ip, 8080, 8080)
    allow_out(host.prefix, box.id, network=host.outside_ip, log=True)
    network.recover_chains(host.prefix, box.id)
    assert view.rules_with(box.id) == []
    allow_out(host.prefix, box.id, network=host.outside_ip)
    assert len(view.rules_with(f"-i w-{box.id}-0 -g {instance}")) == 1


def test_teardown_container_after_partial_setup(host, netns, containers, view) -> None:
    only_links, only_chains = view.unique_id(), containers().id
    veth.setup_links(only_links, netns(), next(host.subnets), 1500)
    allow_out(host.prefix, only_chains, port=80)
    kernel.delete_link(chains.host_iface(only_chains))
    for cid in (only_links, only_chains):
        network.teardown_container(host.prefix, cid)
        assert view.rules_with(cid) == []
        assert view.links_with(cid) == []


def test_teardown_only_touches_its_own_container(host, containers, view) -> None:
    keep, drop = containers(), containers()
    for box in (keep, drop):
        allow_out(host.prefix, box.id, port=80)
    network.teardown_container(host.prefix, drop.id)
    assert view.rules_with(f"-i w-{keep.id}-0 -g {host.prefix}-i-{keep.id}")
    assert chains.host_iface(keep.id) in kernel.link_names()


def test_teardown_host_removes_everything_with_its_prefix(host, netns, view) -> None:
    prefix = f"u{secrets.token_hex(3)}"  # a second server's prefix, beside the module's
    cid = view.unique_id()
    try:
        network.setup_host(prefix, host.spare, [f"{host.outside_ip}/32"], [], False)
        record = network.setup_container(prefix, cid, netns(),
                                         next(host.spare.subnets(new_prefix=30)), 1500)
        network.net_in(prefix, cid, record["container_ip"], 8080, 8080)
        allow_out(prefix, cid, port=53)
        assert len(view.rules_with(prefix)) > 10
    finally:
        network.teardown_host(prefix)
        network.teardown_container(prefix, cid)
    assert view.rules_with(prefix) == []  # ip6tables' guard and raw's antispoof too
    assert view.links_with(cid) == []


def test_a_second_server_leaves_the_first_ones_containers_alone(host, containers, servers,
                                                                connect, view) -> None:
    box = containers()
    server = servers(host.outside_pid, host.outside_ip, token="outside")
    other = servers(host.outside_pid, host.outside_ip, token="other")
    allow_out(host.prefix, box.id, network=host.outside_ip, port=server.port)
    prefix = f"u{secrets.token_hex(3)}"
    try:
        network.setup_host(prefix, host.spare, [], [], False)  # its FORWARD jump goes first
        assert view.iptables().index(f"filter -A FORWARD -i w-+ -j {prefix}-forward") < \
            view.iptables().index(f"filter -A FORWARD -i w-+ -j {host.prefix}-forward")
        assert connect(box.pid, host.outside_ip, server.port) == "outside"
        assert connect(box.pid, host.outside_ip, other.port) == "refused"
    finally:
        network.teardown_host(prefix)


def test_iptables_changes_land_in_the_legacy_tables(host, view) -> None:
    nft = subprocess.run(["iptables-nft", "-S"], capture_output=True, text=True).stdout
    assert host.prefix not in nft
    assert view.rules_with(f"-N {host.prefix}-forward")


def test_a_walk_reads_each_rules_input_interface_as_python_iptables_decodes_it(host,
                                                                               view) -> None:
    """delete_where reads `-i` from the raw entry rather than decoding every rule; it must
    see what the full decoding sees, for every form `-i` takes, and delete only what the
    predicate picked."""
    chain = f"{host.prefix}-walk"
    forms = ["w-abc-0", "w-ab+", "!w-xyz-0", None, "!w-n+"]
    try:
        with kernel.iptables() as ipt:
            ipt.ensure_chain(chains.RAW, chain)
            for form in forms:
                ipt.append(chains.RAW, chain, chains.Rule(
                    target="ACCEPT", in_iface=form,
                    matches=(chains.match("comment", comment=f"form {form}"),)))
        seen: list[tuple[str | None, str | None, str | None]] = []
        with kernel.iptables() as ipt:
            deleted = ipt.delete_where(chains.RAW, chain, lambda listed: (
                seen.append((listed.in_iface, listed.rule.in_interface, listed.comment))
                or listed.in_iface == "w-abc-0"))
        assert deleted == 1
        assert [fast for fast, _, _ in seen] == [slow for _, slow, _ in seen]
        assert [fast for fast, _, _ in seen] == ["w-abc-0", "w-ab+", "!w-xyz-0", None, "!w-n+"]
        assert [comment for _, _, comment in seen] == [f"form {form}" for form in forms]
        left = view.rules_with(f"-A {chain} ")
        assert len(left) == 4 and not [line for line in left if "w-abc-0" in line]
    finally:
        with kernel.iptables() as ipt:
            ipt.delete_chain(chains.RAW, chain)


@pytest.mark.parametrize("own_procfs", [True, False], ids=["own procfs", "by path"])
def test_ipv6_goes_off_in_a_fresh_netns_and_only_there(netns, view, monkeypatch,
                                                       own_procfs) -> None:
    """Through a procfs instance of its own (the lookup below /proc/sys/net grows with the
    live namespaces) and, where the kernel cannot make one, by path."""
    if not kernel.has_ipv6():
        pytest.skip("this kernel runs without IPv6")
    if not own_procfs:
        monkeypatch.setattr(kernel, "_own_procfs", lambda: contextlib.nullcontext(None))
    host_value = view.run("cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6").strip()
    pid = netns()
    kernel.in_netns(pid, kernel._disable_ipv6_in_netns)
    assert view.in_ns(pid, "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6").strip() == "1"
    assert view.in_ns(pid, "cat", "/proc/sys/net/ipv6/conf/lo/disable_ipv6").strip() == "1"
    assert view.run("cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6").strip() == host_value
