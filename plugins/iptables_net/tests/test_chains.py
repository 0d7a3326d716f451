"""Unit: names and rule specs (no kernel)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from warden_iptables_net import chains, veth

CID = "17ar7m9cq5c"


def test_interface_names_fit_ifnamsiz() -> None:
    names = [chains.host_iface(CID), chains.container_iface(CID), chains.ifb_iface(CID)]
    assert names == ["w-17ar7m9cq5c-0", "w-17ar7m9cq5c-1", "w-17ar7m9cq5c-2"]
    assert all(len(name) == 15 for name in names)


def test_chain_names_fit_iptables_limit_with_longest_prefix() -> None:
    prefix = "abcdefghij"
    assert chains.instance_chain("warden", CID) == "warden-i-17ar7m9cq5c"
    assert chains.log_chain(prefix, CID) == f"{prefix}-i-{CID}-log"
    assert len(chains.log_chain(prefix, CID)) <= 28
    assert [chains.forward_chain("warden"), chains.default_chain("warden"),
            chains.prerouting_chain("warden"), chains.postrouting_chain("warden")] == \
        ["warden-forward", "warden-default", "warden-prerouting", "warden-postrouting"]


@pytest.mark.parametrize("prefix", ["", "abcdefghijk", "a-b", "wärden", "a b"])
def test_check_prefix_rejects_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="chain prefix"):
        chains.check_prefix(prefix)


@pytest.mark.parametrize("cid", ["", "17ar7m9cq5", "17ar7m9cq5cc", "17ar7m9cq5w", "17AR7M9CQ5C"])
def test_check_id_rejects_ids_not_shaped_like_warden_ids(cid: str) -> None:
    with pytest.raises(ValueError, match="container id"):
        chains.check_id(cid)


def test_instance_id_recognises_only_instance_chains_of_the_prefix() -> None:
    assert chains.instance_id("warden", f"warden-i-{CID}") == CID
    assert chains.instance_id("warden", f"warden-i-{CID}-log") is None
    assert chains.instance_id("warden", f"other-i-{CID}") is None
    assert chains.instance_id("warden", "warden-forward") is None
    assert chains.instance_id("warden", "warden-i-short") is None


def test_is_owned_covers_host_instance_and_log_chains_only() -> None:
    owned = ["warden-forward", "warden-default", "warden-prerouting", "warden-postrouting",
             "warden-input", "warden-host", "warden-ingress", "warden-antispoof",
             f"warden-i-{CID}", f"warden-i-{CID}-log"]
    assert all(chains.is_owned("warden", chain) for chain in owned)
    assert not any(chains.is_owned("warden", chain) for chain in
                   ["FORWARD", "warden2-forward", f"wardenx-i-{CID}", "warden-i-x-log",
                    "warden-dispatch"])


def test_default_rules_accept_replies_then_deny_then_allow_then_reject() -> None:
    rendered = [r.render() for r in chains.default_rules(["10.1.0.0/16"], ["10.1.2.3"])]
    assert rendered == [
        "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-d 10.1.2.3/32 -j REJECT",
        "-d 10.1.0.0/16 -j RETURN",
        "-j REJECT",
    ]


def test_default_rules_reject_an_invalid_network() -> None:
    with pytest.raises(ValueError):
        chains.default_rules(["10.1.0.0/33"], [])


def test_forward_rules_goto_each_chained_container_then_the_group_then_drop_the_pool() -> None:
    pool = IPv4Network("10.254.0.0/24")
    other = "0123456789v"
    group = hex(chains.device_group("warden"))
    assert [r.render() for r in chains.forward_rules("warden", [CID, other], pool)] == [
        f"-i w-{CID}-0 -g warden-i-{CID}", f"-i w-{other}-0 -g warden-i-{other}",
        f"-m devgroup --src-group {group} -g warden-default", "-s 10.254.0.0/24 -j DROP"]


def test_each_prefix_has_a_device_group_of_its_own_never_the_default() -> None:
    groups = {chains.device_group(f"w{n}") for n in range(1000)}
    assert len(groups) == 1000 and 0 not in groups
    assert all(0 < group < 2**31 for group in groups)
    assert chains.device_group("warden") == chains.device_group("warden")


def test_iface_id_recognises_only_a_containers_host_end() -> None:
    assert chains.iface_id(f"w-{CID}-0") == CID
    for other in (f"w-{CID}-1", f"w-{CID}-0+", f"!w-{CID}-0", "w-short-0", "eth0", "", None):
        assert chains.iface_id(other) is None


def test_host_hooks() -> None:
    pool = IPv4Network("10.254.0.0/24")
    assert chains.forward_jump("warden").render() == "-i w-+ -j warden-forward"
    assert chains.ingress_jump("warden").render() == "-o w-+ -j warden-ingress"
    assert chains.input_jump("warden").render() == "-i w-+ -j warden-input"
    assert chains.antispoof_jump("warden").render() == "-i w-+ -j warden-antispoof"
    assert chains.ipv6_guard("warden").render() == (
        "-i w-+ -m comment --comment warden-ipv6-guard -j DROP")
    assert chains.output_jump("warden").render() == (
        "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j warden-prerouting")
    assert chains.masquerade(pool).render() == (
        "-s 10.254.0.0/24 ! -d 10.254.0.0/24 -j MASQUERADE")


def test_host_chain_blocks_new_connections_unless_host_access_is_allowed() -> None:
    assert [r.render() for r in chains.host_rules("warden", False)] == [
        "-m conntrack ! --ctstate ESTABLISHED,RELATED"
        " -m comment --comment warden-block-traffic-to-host -j REJECT"]
    assert chains.host_rules("warden", True) == []


def test_ingress_rules_leave_containers_to_their_chains_then_admit_replies_and_dnat() -> None:
    pool = IPv4Network("10.254.0.0/24")
    assert [r.render() for r in chains.ingress_rules(pool)] == [
        "-i w-+ -j RETURN",
        "-d 10.254.0.0/24 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-d 10.254.0.0/24 -p tcp -m conntrack --ctstate DNAT -j ACCEPT",
        "-d 10.254.0.0/24 -j DROP",
    ]


def test_guards_match_the_servers_veths_and_the_routes_back() -> None:
    group = hex(chains.device_group("warden"))
    assert [r.render() for r in chains.input_rules("warden")] == [
        f"-m devgroup --src-group {group} -g warden-host"]
    assert [r.render() for r in chains.antispoof_rules()] == [
        "-m rpfilter --invert -j DROP", "! -s 0.0.0.2/0.0.0.3 -j DROP"]


def test_the_address_bits_leave_only_a_containers_own_address_of_its_slash_30() -> None:
    bits, mask = (IPv4Address(part) for part in chains.CONTAINER_ADDRESS_BITS.split("/"))
    subnet = IPv4Network("10.254.0.4/30")
    kept = [a for a in subnet if int(a) & int(mask) == int(bits)]
    assert kept == [IPv4Address(veth.addresses(subnet)[1])]


def test_container_chains() -> None:
    assert [r.render() for r in chains.instance_rules("warden")] == ["-g warden-default"]
    assert [r.render() for r in chains.log_rules("warden", CID)] == [
        f'-p tcp -m conntrack --ctstate NEW,UNTRACKED,INVALID -j LOG --log-prefix'
        f' "warden-i-{CID} "',
        "-j RETURN",
    ]
    assert chains.nat_instance_jump("warden", CID).render() == f"-j warden-i-{CID}"


def test_net_record_of_a_slash_30() -> None:
    assert veth.net_record(CID, IPv4Network("10.254.0.4/30"), 1454) == {
        "container_id": CID, "network": "10.254.0.4/30", "netmask": "255.255.255.252",
        "host_ip": "10.254.0.5", "container_ip": "10.254.0.6",
        "host_iface": f"w-{CID}-0", "container_iface": f"w-{CID}-1",
        "ifb_iface": f"w-{CID}-2", "mtu": 1454,
    }


def test_container_network_must_be_a_slash_30() -> None:
    with pytest.raises(ValueError, match="/30"):
        veth.addresses(IPv4Network("10.254.0.0/29"))
