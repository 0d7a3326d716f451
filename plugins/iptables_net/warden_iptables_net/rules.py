"""NetIn and NetOut: request validation and the iptables rule each one becomes.

Pure: no I/O. Error texts are what the client sees (facts §2.2, §5.3, §5.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from warden_iptables_net import chains

PROTOCOLS = ("tcp", "udp", "icmp", "all")  # index = NetOutRequest.Protocol value
ANY = -1  # icmp_type / icmp_code meaning "any" (facts §5.4)

NO_TARGET = "Please specify network, port, and/or port_range."
BAD_RANGE = "Port range maximum must be greater than minimum"


class RuleError(ValueError):
    """A NetIn/NetOut request that cannot become a rule; the text is for the client."""


@dataclass(frozen=True)
class NetOutRule:
    """A validated NetOut request, normalised (None = not restricted)."""

    network: str | None
    ports: str | None  # "80" or "2000:2002"
    protocol: str  # one of PROTOCOLS
    icmp_type: int | None
    icmp_code: int | None
    log: bool

    def to_resource(self) -> list:
        """The snapshot form `[network, ports, protocol, icmp_type, icmp_code, log]` (§7.1)."""
        return [self.network, self.ports, self.protocol, self.icmp_type, self.icmp_code,
                self.log]

    @classmethod
    def from_resource(cls, item: list) -> NetOutRule:
        """Inverse of `to_resource`, re-validated."""
        network, ports, protocol, icmp_type, icmp_code, log = item
        return parse_net_out(network=network, port_range=ports, protocol=protocol,
                             icmp_type=icmp_type, icmp_code=icmp_code, log=log)


def parse_net_out(network: str | None = None, port: int | None = None,
                  port_range: str | None = None, protocol: int | str | None = None,
                  icmp_type: int | None = None, icmp_code: int | None = None,
                  log: bool | None = None) -> NetOutRule:
    """Validate a NetOut request; raise RuleError with the client's message."""
    network = network or None
    port_range = port_range or None
    if network is None and port is None and port_range is None:
        raise RuleError(NO_TARGET)
    ports = _ports(port, port_range)
    name = _protocol(protocol)
    if ports is not None and name not in ("tcp", "udp"):
        raise RuleError(f"port and port_range need protocol tcp or udp, not {name}")
    if network is not None:
        _destination(network)
    icmp_type, icmp_code = _icmp(name, icmp_type, icmp_code)
    return NetOutRule(network, ports, name, icmp_type, icmp_code, bool(log))


def net_out_rule(prefix: str, container_id: str, rule: NetOutRule) -> chains.Rule:
    """The filter rule for `rule`, to be inserted at the top of the container's chain."""
    matches: list[chains.Match] = []
    dst = None
    if rule.network is not None:
        kind, value = _destination(rule.network)
        if kind == "range":
            matches.append(chains.match("iprange", dst_range=value))
        else:
            dst = value
    if rule.ports is not None:
        matches.append(chains.match(rule.protocol, dport=rule.ports))
    if rule.icmp_type is not None:
        code = "" if rule.icmp_code is None else f"/{rule.icmp_code}"
        matches.append(chains.match("icmp", icmp_type=f"{rule.icmp_type}{code}"))
    protocol = None if rule.protocol == "all" else rule.protocol
    if rule.log:
        target, goto = chains.log_chain(prefix, container_id), True
    else:
        target, goto = "RETURN", False
    return chains.Rule(target, goto=goto, dst=dst, protocol=protocol, matches=tuple(matches))


def check_port(value: int, what: str) -> int:
    """Return `value` if it is a TCP port number (1..65535), else raise RuleError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise RuleError(f"Invalid {what}: {value!r} (must be 1..65535)")
    return value


def net_in_rule(container_id: str, container_ip: str, host_port: int,
                container_port: int) -> chains.Rule:
    """DNAT of TCP to any local address on host_port, to container_ip:container_port.

    Traffic that comes from the container itself is left alone, so a container whose
    host port is 80 can still reach port 80 elsewhere (and on the host).
    """
    check_port(host_port, "host_port")
    check_port(container_port, "container_port")
    address = IPv4Address(container_ip)
    return chains.Rule(
        "DNAT", protocol="tcp", in_iface=f"!{chains.host_iface(container_id)}",
        matches=(chains.match("addrtype", dst_type="LOCAL"),
                 chains.match("tcp", dport=str(host_port))),
        target_params=(("to-destination", f"{address}:{container_port}"),),
    )


def _ports(port: int | None, port_range: str | None) -> str | None:
    if port_range is not None:  # port_range beats port (facts §5.4)
        return _port_range(port_range)
    if port is not None:
        return str(check_port(port, "port"))
    return None


def _port_range(text: str) -> str:
    low, sep, high = text.partition(":")
    if not low.isdigit() or (sep and not high.isdigit()):
        raise RuleError(f"Invalid port_range: {text!r}")
    if not sep:
        return str(check_port(int(low), "port_range"))
    if int(low) >= int(high):
        raise RuleError(BAD_RANGE)
    check_port(int(low), "port_range minimum")
    check_port(int(high), "port_range maximum")
    return f"{int(low)}:{int(high)}"


def _protocol(protocol: int | str | None) -> str:
    if protocol is None:
        return "tcp"
    if isinstance(protocol, str) and protocol.lower() in PROTOCOLS:
        return protocol.lower()
    if isinstance(protocol, int) and not isinstance(protocol, bool) \
            and 0 <= protocol < len(PROTOCOLS):
        return PROTOCOLS[protocol]
    raise RuleError(f"Invalid protocol: {protocol!r}")


def _destination(network: str) -> tuple[str, str]:
    """("range", "a-b") for a dash range, else ("net", normalised CIDR)."""
    try:
        if "-" in network:
            first, last = (IPv4Address(part.strip()) for part in network.split("-", 1))
            if first > last:
                raise ValueError("range ends before it starts")
            return "range", f"{first}-{last}"
        net = IPv4Network(network.strip(), strict=False)
    except ValueError as error:
        raise RuleError(f"Invalid network: {network!r} ({error})") from None
    return "net", str(net)


def _icmp(protocol: str, icmp_type: int | None,
          icmp_code: int | None) -> tuple[int | None, int | None]:
    """Type and code for the rule; both ignored unless protocol is icmp (facts §5.4)."""
    if protocol != "icmp":
        return None, None
    kind = _icmp_number(icmp_type, "icmp_type")
    code = _icmp_number(icmp_code, "icmp_code")
    return (None, None) if kind is None else (kind, code)


def _icmp_number(value: int | None, what: str) -> int | None:
    if value is None or value == ANY:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise RuleError(f"Invalid {what}: {value!r} (must be 0..255, or -1 for any)")
    return value
