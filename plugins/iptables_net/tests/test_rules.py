"""Unit: NetOut/NetIn validation and the rules they become; tbf arithmetic (no kernel)."""

from __future__ import annotations

import pytest

from warden_iptables_net import rules, shaping
from warden_iptables_net.rules import NetOutRule, RuleError, parse_net_out

CID = "17ar7m9cq5c"


def rendered(rule: NetOutRule) -> str:
    return rules.net_out_rule("warden", CID, rule).render()


# ------------------------------------------------------------- NetOut validation

@pytest.mark.parametrize("request_", [{}, {"network": ""}, {"port_range": ""},
                                      {"protocol": 1, "log": True}])
def test_net_out_needs_network_port_or_range(request_: dict) -> None:
    with pytest.raises(RuleError) as raised:
        parse_net_out(**request_)
    assert str(raised.value) == "Please specify network, port, and/or port_range."


@pytest.mark.parametrize("port_range", ["2002:2000", "2000:2000", "70000:100"])
def test_port_range_maximum_must_exceed_minimum(port_range: str) -> None:
    with pytest.raises(RuleError) as raised:
        parse_net_out(port_range=port_range)
    assert str(raised.value) == "Port range maximum must be greater than minimum"


@pytest.mark.parametrize("request_, text", [
    ({"network": "1.2.3.0/33"}, "Invalid network: '1.2.3.0/33'"),
    ({"network": "example.com"}, "Invalid network: 'example.com'"),
    ({"network": "1.2.3.9-1.2.3.1"}, "Invalid network: '1.2.3.9-1.2.3.1'"),
    ({"network": "1.2.3.1-x"}, "Invalid network: '1.2.3.1-x'"),
    ({"port": 0}, "Invalid port: 0"),
    ({"port": 65536}, "Invalid port: 65536"),
    ({"port_range": "0:10"}, "Invalid port_range minimum: 0"),
    ({"port_range": "10:65536"}, "Invalid port_range maximum: 65536"),
    ({"port_range": "a:b"}, "Invalid port_range: 'a:b'"),
    ({"port_range": "10-20"}, "Invalid port_range: '10-20'"),
    ({"port": 80, "protocol": 10}, "Invalid protocol: 10"),
    ({"port": 80, "protocol": "sctp"}, "Invalid protocol: 'sctp'"),
    ({"port": 80, "protocol": 2}, "port and port_range need protocol tcp or udp, not icmp"),
    ({"port_range": "1:2", "protocol": 3},
     "port and port_range need protocol tcp or udp, not all"),
    ({"network": "1.2.3.4", "protocol": 2, "icmp_type": 256}, "Invalid icmp_type: 256"),
    ({"network": "1.2.3.4", "protocol": 2, "icmp_type": 8, "icmp_code": -2},
     "Invalid icmp_code: -2"),
])
def test_net_out_rejects_nonsense_with_a_clear_message(request_: dict, text: str) -> None:
    with pytest.raises(RuleError) as raised:
        parse_net_out(**request_)
    assert str(raised.value).startswith(text)


def test_net_out_defaults_and_port_range_beats_port() -> None:
    rule = parse_net_out(port=80, port_range="2000:2002")
    assert rule == NetOutRule(None, "2000:2002", "tcp", None, None, False)
    assert parse_net_out(port=53, protocol=1).ports == "53"


@pytest.mark.parametrize("protocol, name", [(None, "tcp"), (0, "tcp"), (1, "udp"),
                                            (2, "icmp"), (3, "all"), ("UDP", "udp")])
def test_protocol_numbers_follow_the_wire_enum(protocol, name: str) -> None:
    assert parse_net_out(network="10.0.0.0/8", protocol=protocol).protocol == name


def test_icmp_minus_one_means_any_and_code_needs_a_type() -> None:
    assert parse_net_out(network="1.2.3.4", protocol=2, icmp_type=-1, icmp_code=-1) \
        .icmp_type is None
    assert parse_net_out(network="1.2.3.4", protocol=2, icmp_type=-1, icmp_code=3) \
        .icmp_code is None
    assert parse_net_out(network="1.2.3.4", protocol=2, icmp_type=8, icmp_code=-1) \
        .icmp_code is None


def test_icmp_fields_are_ignored_for_other_protocols() -> None:
    rule = parse_net_out(network="1.2.3.4", protocol=0, icmp_type=8, icmp_code=0)
    assert (rule.icmp_type, rule.icmp_code) == (None, None)


def test_resource_round_trip() -> None:
    rule = parse_net_out(network="1.2.3.0/24", port_range="1:9", protocol=1, log=True)
    assert rule.to_resource() == ["1.2.3.0/24", "1:9", "udp", None, None, True]
    assert NetOutRule.from_resource(rule.to_resource()) == rule


# ------------------------------------------------------------------ NetOut rules

def test_net_out_rule_for_cidr_and_port_returns() -> None:
    assert rendered(parse_net_out(network="1.2.3.4/24", port=80)) == \
        "-d 1.2.3.0/24 -p tcp -m tcp --dport 80 -j RETURN"


def test_net_out_rule_for_dash_range_uses_iprange() -> None:
    assert rendered(parse_net_out(network="1.2.3.4-1.2.3.9", port_range="1:9",
                                  protocol=1)) == \
        "-p udp -m iprange --dst-range 1.2.3.4-1.2.3.9 -m udp --dport 1:9 -j RETURN"


def test_net_out_rule_for_icmp_type_and_code() -> None:
    assert rendered(parse_net_out(network="1.2.3.4", protocol=2, icmp_type=8,
                                  icmp_code=0)) == \
        "-d 1.2.3.4/32 -p icmp -m icmp --icmp-type 8/0 -j RETURN"
    assert rendered(parse_net_out(network="1.2.3.4", protocol=2, icmp_type=8)) == \
        "-d 1.2.3.4/32 -p icmp -m icmp --icmp-type 8 -j RETURN"
    assert rendered(parse_net_out(network="1.2.3.4", protocol=2)) == \
        "-d 1.2.3.4/32 -p icmp -j RETURN"


def test_net_out_rule_for_all_has_no_protocol_and_log_goes_to_the_log_chain() -> None:
    assert rendered(parse_net_out(network="1.2.3.4", protocol=3, log=True)) == \
        f"-d 1.2.3.4/32 -g warden-i-{CID}-log"


# ------------------------------------------------------------------------ NetIn

def test_net_in_rule_dnats_local_addresses_except_from_the_container() -> None:
    assert rules.net_in_rule(CID, "10.254.0.2", 61001, 8080).render() == (
        f"! -i w-{CID}-0 -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 61001"
        " -j DNAT --to-destination 10.254.0.2:8080")


@pytest.mark.parametrize("host_port, container_port", [(0, 80), (80, 65536), (True, 80)])
def test_net_in_rejects_bad_ports(host_port, container_port) -> None:
    with pytest.raises(RuleError, match="Invalid"):
        rules.net_in_rule(CID, "10.254.0.2", host_port, container_port)


# ------------------------------------------------------------------- tbf numbers

def test_burst_round_trips_through_tbf_buffer() -> None:
    ticks = 15.625  # /proc/net/psched on this kernel: 1000/64 * 1e6/1e6
    assert shaping.burst_ticks(100000, 1000, ticks) == 156250
    for rate, burst in [(100000, 1000), (200000, 2000), (123457, 3333), (10**6, 65536)]:
        buffer = shaping.burst_ticks(rate, burst, ticks)
        assert shaping.burst_from_buffer(buffer, rate, ticks) == burst


def test_burst_read_back_is_what_tbf_holds_after_tc_truncation() -> None:
    ticks = 15.625
    buffer = shaping.burst_ticks(10**9, 65536, ticks)  # 65.536 us -> 65 us -> 1015 ticks
    assert buffer == 1015
    assert shaping.burst_from_buffer(buffer, 10**9, ticks) == 64960  # 1015 * 64 ns


@pytest.mark.parametrize("rate, burst, text", [(0, 1000, "rate"), (2**32, 1000, "rate"),
                                               (1000, 0, "burst"), (1, 10**6, "too large")])
def test_check_limits_refuses_what_tbf_cannot_hold(rate: int, burst: int, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        shaping.check_limits(rate, burst, 15.625)
