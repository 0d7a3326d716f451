"""Names of every kernel object made for the network, and the iptables rules as data.

Owns the naming scheme (interfaces, chains, the comment tag) and what each chain holds.
Pure: no I/O. `kernel.py` turns a `Rule` into a python-iptables rule.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Protocol

ID_PATTERN = re.compile(r"[0-9a-v]{11}")
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_]{1,10}")

HOST_IFACES = "w-+"  # every host-side veth (`w-<id>-0`); iptables' `+` is a wildcard
# A container's own address is the third of its /30 (veth.SUBNET_PREFIXLEN): its last two
# bits are 10. As a source with this mask, it matches exactly the addresses so placed.
CONTAINER_ADDRESS_BITS = "0.0.0.2/0.0.0.3"
LOOPBACK = "127.0.0.0/8"

FILTER = "filter"
NAT = "nat"
RAW = "raw"
FILTER6 = "filter6"  # ip6tables' filter table

Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Match:
    """An iptables match extension (`-m name --param value ...`)."""

    name: str
    params: Params = ()


@dataclass(frozen=True)
class Rule:
    """One iptables rule. A value starting with `!` is negated, as in iptables."""

    target: str
    goto: bool = False
    target_params: Params = ()
    src: str | None = None
    dst: str | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    protocol: str | None = None
    matches: tuple[Match, ...] = field(default=())

    def render(self) -> str:
        """The rule in `iptables -S` syntax (for messages and tests)."""
        words: list[str] = []
        for flag, value in (("-s", self.src), ("-d", self.dst), ("-i", self.in_iface),
                            ("-o", self.out_iface), ("-p", self.protocol)):
            if value is not None:
                words += _negatable(flag, value)
        for match in self.matches:
            words += ["-m", match.name] + _params(match.params)
        words += ["-g" if self.goto else "-j", self.target] + _params(self.target_params)
        return " ".join(words)


class Listed(Protocol):
    """What `kernel` reports of an existing rule: enough to recognise ours."""

    target: str  # "" when the rule has none
    goto: bool
    in_iface: str | None  # as `-i` takes it: "!" before when negated, "+" after a prefix
    comment: str | None


def match(name: str, **params: str) -> Match:
    """A Match; keyword `dst_type` becomes iptables' `--dst-type`."""
    return Match(name, tuple((key.replace("_", "-"), value) for key, value in params.items()))


def _negatable(flag: str, value: str) -> list[str]:
    return ["!", flag, value[1:]] if value.startswith("!") else [flag, value]


def _params(params: Params) -> list[str]:
    """`--key value` for each; a key with the value "" is a bare flag (`--invert`)."""
    words: list[str] = []
    for key, value in params:
        words += _negatable(f"--{key}", value) if value else [f"--{key}"]
    return [f'"{w}"' if " " in w or not w else w for w in words]


# ----------------------------------------------------------------------------- names

def check_prefix(prefix: str) -> str:
    """Return `prefix` if it is 1-10 of [A-Za-z0-9_], else raise ValueError."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"chain prefix must be 1-10 of [A-Za-z0-9_], got {prefix!r}")
    return prefix


def check_id(container_id: str) -> str:
    """Return `container_id` if it is 11 of [0-9a-v] (Warden's ids), else raise ValueError."""
    if not ID_PATTERN.fullmatch(container_id):
        raise ValueError(f"container id must be 11 of [0-9a-v], got {container_id!r}")
    return container_id


def host_iface(container_id: str) -> str:
    return f"w-{container_id}-0"


def container_iface(container_id: str) -> str:
    return f"w-{container_id}-1"


def ifb_iface(container_id: str) -> str:
    return f"w-{container_id}-2"


def forward_chain(prefix: str) -> str:
    return f"{prefix}-forward"


def default_chain(prefix: str) -> str:
    return f"{prefix}-default"


def prerouting_chain(prefix: str) -> str:
    return f"{prefix}-prerouting"


def postrouting_chain(prefix: str) -> str:
    return f"{prefix}-postrouting"


def input_chain(prefix: str) -> str:
    """filter: traffic from a container's veth to the host, sorted by veth."""
    return f"{prefix}-input"


def host_chain(prefix: str) -> str:
    """filter: what the host accepts from its containers (the host block, or nothing)."""
    return f"{prefix}-host"


def ingress_chain(prefix: str) -> str:
    """filter: what may be forwarded to a container."""
    return f"{prefix}-ingress"


def antispoof_chain(prefix: str) -> str:
    """raw: the one source address a container may use."""
    return f"{prefix}-antispoof"


def device_group(prefix: str) -> int:
    """The netdev group of this server's host veths (`ip link set ... group`), set when
    each is made: one rule matching the group stands for a rule per veth (see
    forward_rules). From the prefix, so that each server on a host has its own (a clash
    between two prefixes is a 1 in 2**31 chance); never 0, every other link's group."""
    return (zlib.crc32(f"warden-{prefix}".encode()) & 0x7FFFFFFF) or 1


def instance_chain(prefix: str, container_id: str) -> str:
    """The container's chain, in filter (egress policy) and in nat (its DNATs)."""
    return f"{prefix}-i-{container_id}"


def log_chain(prefix: str, container_id: str) -> str:
    return f"{instance_chain(prefix, container_id)}-log"


def host_block_tag(prefix: str) -> str:
    """Comment on the rule that blocks containers from the host."""
    return f"{prefix}-block-traffic-to-host"


def ipv6_guard_tag(prefix: str) -> str:
    """Comment on the ip6tables rules that drop IPv6 from container veths."""
    return f"{prefix}-ipv6-guard"


def iface_id(iface: str | None) -> str | None:
    """The container id if `iface` is a container's host end `w-<id>-0`, else None."""
    if iface and iface.startswith("w-") and iface.endswith("-0") \
            and ID_PATTERN.fullmatch(iface[2:-2]):
        return iface[2:-2]
    return None


def instance_id(prefix: str, chain: str) -> str | None:
    """The container id if `chain` is `<prefix>-i-<id>` (not the -log chain), else None."""
    head = f"{prefix}-i-"
    rest = chain[len(head):]
    if chain.startswith(head) and ID_PATTERN.fullmatch(rest):
        return rest
    return None


def is_owned(prefix: str, chain: str) -> bool:
    """Whether `chain` is one this prefix creates (host chains, instance and log chains)."""
    if chain in (forward_chain(prefix), default_chain(prefix), prerouting_chain(prefix),
                 postrouting_chain(prefix), input_chain(prefix), host_chain(prefix),
                 ingress_chain(prefix), antispoof_chain(prefix)):
        return True
    base = chain[:-len("-log")] if chain.endswith("-log") else chain
    return instance_id(prefix, base) is not None


# ------------------------------------------------------------------ host-level rules

def forward_jump(prefix: str) -> Rule:
    """FORWARD: traffic from any container enters this server's forward chain."""
    return Rule(forward_chain(prefix), in_iface=HOST_IFACES)


def forward_rules(prefix: str, chained: list[str], pool: IPv4Network) -> list[Rule]:
    """Contents of the forward chain: a goto to its own chain for each container in
    `chained` (its net_out rules made one), every other veth of this server's group to the
    default chain, then DROP the pool.

    One rule for the group, not one per veth: a legacy table is read and written whole on
    every change, so a rule per container made each create and destroy cost more as the
    containers grew (setup and teardown of one container's rules took 1.08 ms with none
    live, 4.80 ms with 1,000), and each forwarded packet walked them in turn. The group
    is the veth's, set by the host: a container cannot leave it, whatever source it forges.

    The DROP catches a veth with one of our addresses outside the group (made by a server
    that did not set groups yet, until setup_host puts it in). It is limited to the pool
    so that the `w-*` traffic of another server's containers on this host passes on to
    that server's forward chain (the original dropped all `w-*` traffic here).
    """
    return [forward_goto(prefix, cid) for cid in chained] + [
        Rule(default_chain(prefix), goto=True, matches=(group_match(prefix),)),
        Rule("DROP", src=str(pool))]


def group_match(prefix: str) -> Match:
    """Traffic that came in on a veth of this server's device group."""
    return match("devgroup", src_group=hex(device_group(prefix)))


def default_rules(allow_networks: list[str], deny_networks: list[str]) -> list[Rule]:
    """Contents of the default chain, where a container's unmatched traffic ends."""
    established = Rule("ACCEPT", matches=(match("conntrack", ctstate="ESTABLISHED,RELATED"),))
    deny = [Rule("REJECT", dst=str(_network(n))) for n in deny_networks]
    allow = [Rule("RETURN", dst=str(_network(n))) for n in allow_networks]
    return [established, *deny, *allow, Rule("REJECT")]


def input_jump(prefix: str) -> Rule:
    """INPUT: traffic from any container veth enters this server's input chain."""
    return Rule(input_chain(prefix), in_iface=HOST_IFACES)


def input_rules(prefix: str) -> list[Rule]:
    """Contents of the input chain: traffic to the host from a veth of this server's group
    meets its host chain. By veth, not by source: a forged source outside the pool would
    pass a source range (test_containment's attack with the other layers gone)."""
    return [Rule(host_chain(prefix), goto=True, matches=(group_match(prefix),))]


def host_rules(prefix: str, allow_host_access: bool) -> list[Rule]:
    """Contents of the host chain: new connections refused, replies pass; or nothing."""
    return [] if allow_host_access else [host_block(prefix)]


def host_block(prefix: str) -> Rule:
    return Rule("REJECT", matches=(
        match("conntrack", ctstate="!ESTABLISHED,RELATED"),
        match("comment", comment=host_block_tag(prefix)),
    ))


def ingress_jump(prefix: str) -> Rule:
    """FORWARD: traffic to any container veth enters this server's ingress chain."""
    return Rule(ingress_chain(prefix), out_iface=HOST_IFACES)


def ingress_rules(pool: IPv4Network) -> list[Rule]:
    """Contents of the ingress chain: what may be forwarded to this server's containers.

    Traffic from a container (this server's or another's) was judged by the sender's own
    chain, where net_out decides (Warden lets one container reach another that way).
    From anywhere else: replies, and TCP that a net_in rule DNATed (only our nat chains
    DNAT to the pool); everything else to the pool is dropped.
    """
    return [
        Rule("RETURN", in_iface=HOST_IFACES),
        Rule("ACCEPT", dst=str(pool),
             matches=(match("conntrack", ctstate="ESTABLISHED,RELATED"),)),
        Rule("ACCEPT", dst=str(pool), protocol="tcp",
             matches=(match("conntrack", ctstate="DNAT"),)),
        Rule("DROP", dst=str(pool)),
    ]


def antispoof_jump(prefix: str) -> Rule:
    """raw PREROUTING: everything from any container veth meets the anti-spoofing rules."""
    return Rule(antispoof_chain(prefix), in_iface=HOST_IFACES)


def antispoof_rules() -> list[Rule]:
    """Contents of the antispoof chain: from a container veth, any source but the
    container's own address is dropped.

    Two rules for every veth instead of one per veth (see forward_rules): a strict reverse
    path check (the rpfilter match does its own route lookup, whatever the rp_filter
    sysctls say) leaves the sources routed back through the veth the packet came in on:
    the container's /30, the one route through it; of those, the mask leaves only the
    container's address (a route lookup does not refuse the /30's network address).

    In raw PREROUTING it runs before conntrack and NAT, for traffic to the host and
    forwarded traffic alike: a forged packet makes no conntrack entry and meets no DNAT.
    """
    return [Rule("DROP", matches=(match("rpfilter", invert=""),)),
            Rule("DROP", src=f"!{CONTAINER_ADDRESS_BITS}")]


def ipv6_guard(prefix: str) -> Rule:
    """ip6tables INPUT and FORWARD: nothing over IPv6 from a container veth."""
    return Rule("DROP", in_iface=HOST_IFACES,
                matches=(match("comment", comment=ipv6_guard_tag(prefix)),))


def prerouting_jump(prefix: str) -> Rule:
    """PREROUTING: inbound traffic reaches the per-container DNAT chains."""
    return Rule(prerouting_chain(prefix))


def output_jump(prefix: str) -> Rule:
    """nat OUTPUT: the host's own connections to its addresses reach the DNAT chains.

    Loopback is left out: a DNAT of 127.0.0.1 would leave with a loopback source.
    """
    return Rule(prerouting_chain(prefix), dst=f"!{LOOPBACK}",
                matches=(match("addrtype", dst_type="LOCAL"),))


def postrouting_jump(prefix: str) -> Rule:
    return Rule(postrouting_chain(prefix))


def masquerade(pool: IPv4Network) -> Rule:
    """Containers leave the host with the address of the outgoing interface."""
    return Rule("MASQUERADE", src=str(pool), dst=f"!{pool}")


# ------------------------------------------------------------- per-container rules

def forward_goto(prefix: str, container_id: str) -> Rule:
    """Forward chain: traffic from this container's veth goes to its own chain, once it
    has one (its first NetOut rule makes it); until then the group's rule sends it to the
    default chain, where its own chain would send it too."""
    return Rule(instance_chain(prefix, container_id), goto=True,
                in_iface=host_iface(container_id))


def instance_rules(prefix: str) -> list[Rule]:
    """Initial contents of a container's filter chain (NetOut rules go above)."""
    return [Rule(default_chain(prefix), goto=True)]


def log_rules(prefix: str, container_id: str) -> list[Rule]:
    """Contents of the log chain: log new TCP connections, then allow (facts §5.4)."""
    log_prefix = f"{instance_chain(prefix, container_id)} "
    return [
        Rule("LOG", protocol="tcp", target_params=(("log-prefix", log_prefix),),
             matches=(match("conntrack", ctstate="NEW,UNTRACKED,INVALID"),)),
        Rule("RETURN"),
    ]


def nat_instance_jump(prefix: str, container_id: str) -> Rule:
    """Prerouting chain: every inbound packet visits each container's DNAT chain."""
    return Rule(instance_chain(prefix, container_id))


def _network(text: str) -> IPv4Network:
    return IPv4Network(text, strict=False)
