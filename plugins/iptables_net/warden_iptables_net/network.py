"""The server's iptables state and each container's share of it, plus the container's
links (through `veth`): what the driver calls.

Every function is idempotent and safe after a crash at any line: it rebuilds what it
owns from names derived from the prefix and container id (facts §10.3, §10.4).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Network

from warden_iptables_net import chains, kernel, rules, veth
from warden_iptables_net.chains import FILTER, FILTER6, NAT, RAW, Listed
from warden_iptables_net.kernel import Iptables


# ----------------------------------------------------------------------- the host

def setup_host(prefix: str, pool_network: IPv4Network | str, allow_networks: list[str],
               deny_networks: list[str], allow_host_access: bool) -> None:
    """(Re)build the host chains and hooks for `prefix`; enable forwarding.

    Containers with chains of their own keep their forward gotos and DNAT jumps, so a
    restart does not cut live containers off (nor unguard them). Running it twice changes
    nothing.
    """
    chains.check_prefix(prefix)
    pool = IPv4Network(pool_network, strict=False)
    with kernel.iptables() as ipt:
        with_gotos = _forward_ids(ipt, prefix)
        _adopt_veths(prefix, with_gotos)
        _setup_filter(ipt, prefix, with_gotos, pool, allow_networks, deny_networks,
                      allow_host_access)
        _setup_raw(ipt, prefix)
        _setup_nat(ipt, prefix, pool)
        if kernel.has_ipv6():
            _setup_ipv6_guard(ipt, prefix)
    kernel.enable_ip_forward()


def teardown_host(prefix: str) -> None:
    """Remove every chain and hook with this prefix, including all containers' chains."""
    chains.check_prefix(prefix)
    with kernel.iptables() as ipt:
        ipt.delete_where(FILTER, "FORWARD", _targets(chains.forward_chain(prefix)))
        ipt.delete_where(FILTER, "FORWARD", _targets(chains.ingress_chain(prefix)))
        ipt.delete_where(FILTER, "INPUT", _targets(chains.input_chain(prefix)))
        ipt.delete_where(FILTER, "INPUT", _tagged(chains.host_block_tag(prefix)))
        ipt.delete_where(RAW, "PREROUTING", _targets(chains.antispoof_chain(prefix)))
        for hook in ("PREROUTING", "OUTPUT"):
            ipt.delete_where(NAT, hook, _targets(chains.prerouting_chain(prefix)))
        ipt.delete_where(NAT, "POSTROUTING", _targets(chains.postrouting_chain(prefix)))
        if kernel.has_ipv6():
            for hook in ("INPUT", "FORWARD"):
                ipt.delete_where(FILTER6, hook, _tagged(chains.ipv6_guard_tag(prefix)))
        for table in (FILTER, NAT, RAW):
            owned = [c for c in ipt.chains(table) if chains.is_owned(prefix, c)]
            for chain in owned:  # flush all first: they refer to each other
                ipt.flush(table, chain)
            for chain in owned:
                ipt.delete_chain(table, chain)


def list_container_ids(prefix: str) -> list[str]:
    """Ids of the containers with a veth in this prefix's device group, a goto in its
    forward chain or a nat chain under it."""
    chains.check_prefix(prefix)
    with kernel.iptables() as ipt:
        listed = {*_forward_ids(ipt, prefix), *_nat_ids(ipt, prefix)}
    return sorted(listed | _group_ids(prefix))


def _adopt_veths(prefix: str, with_gotos: list[str]) -> None:
    """Veths made before veths had a device group (each had a goto of its own in the
    forward chain then, so they are among `with_gotos`) join the group, before
    _setup_filter replaces the rules that named them with the group's."""
    group = chains.device_group(prefix)
    for container_id in with_gotos:
        kernel.join_group(chains.host_iface(container_id), group)


def _setup_filter(ipt: Iptables, prefix: str, with_gotos: list[str], pool: IPv4Network,
                  allow: list[str], deny: list[str], allow_host_access: bool) -> None:
    forward, default = chains.forward_chain(prefix), chains.default_chain(prefix)
    ingress = chains.ingress_chain(prefix)
    host, input_ = chains.host_chain(prefix), chains.input_chain(prefix)
    # in the forward chain's order, so that a second run changes nothing
    chained = [cid for cid in with_gotos
               if ipt.has_chain(FILTER, chains.instance_chain(prefix, cid))]
    for chain in (forward, default, ingress, host, input_):
        ipt.ensure_chain(FILTER, chain)
    _fill(ipt, FILTER, default, chains.default_rules(allow, deny))
    _fill(ipt, FILTER, forward, chains.forward_rules(prefix, chained, pool))
    _fill(ipt, FILTER, ingress, chains.ingress_rules(pool))
    _fill(ipt, FILTER, host, chains.host_rules(prefix, allow_host_access))
    _fill(ipt, FILTER, input_, chains.input_rules(prefix))
    _hook(ipt, FILTER, "FORWARD", chains.forward_jump(prefix))
    _hook(ipt, FILTER, "FORWARD", chains.ingress_jump(prefix))
    _hook(ipt, FILTER, "INPUT", chains.input_jump(prefix))
    # Earlier versions put the host block in INPUT itself, by source range; this can go
    # once no host carries one.
    ipt.delete_where(FILTER, "INPUT", _tagged(chains.host_block_tag(prefix)))


def _setup_raw(ipt: Iptables, prefix: str) -> None:
    antispoof = chains.antispoof_chain(prefix)
    ipt.ensure_chain(RAW, antispoof)
    _fill(ipt, RAW, antispoof, chains.antispoof_rules())
    _hook(ipt, RAW, "PREROUTING", chains.antispoof_jump(prefix))


def _setup_ipv6_guard(ipt: Iptables, prefix: str) -> None:
    for hook in ("INPUT", "FORWARD"):
        ipt.delete_where(FILTER6, hook, _tagged(chains.ipv6_guard_tag(prefix)))
        ipt.insert(FILTER6, hook, chains.ipv6_guard(prefix))


def _setup_nat(ipt: Iptables, prefix: str, pool: IPv4Network) -> None:
    prerouting, postrouting = chains.prerouting_chain(prefix), chains.postrouting_chain(prefix)
    ipt.ensure_chain(NAT, prerouting)
    ipt.ensure_chain(NAT, postrouting)
    ids = _nat_ids(ipt, prefix)
    _fill(ipt, NAT, prerouting, [chains.nat_instance_jump(prefix, cid) for cid in ids])
    _fill(ipt, NAT, postrouting, [chains.masquerade(pool)])
    _hook(ipt, NAT, "PREROUTING", chains.prerouting_jump(prefix))
    _hook(ipt, NAT, "OUTPUT", chains.output_jump(prefix))
    _hook(ipt, NAT, "POSTROUTING", chains.postrouting_jump(prefix))


def _hook(ipt: Iptables, table: str, builtin: str, jump: chains.Rule) -> None:
    """Exactly one `jump` in `builtin`, at the top (above rules that would accept first)."""
    ipt.delete_where(table, builtin, _targets(jump.target))
    ipt.insert(table, builtin, jump)


def _fill(ipt: Iptables, table: str, chain: str, contents: list[chains.Rule],
          flush: bool = True) -> None:
    if flush:
        ipt.flush(table, chain)
    for rule in contents:
        ipt.append(table, chain, rule)


def _targets(chain: str) -> Callable[[Listed], bool]:
    return lambda listed: listed.target == chain


def _tagged(tag: str) -> Callable[[Listed], bool]:
    return lambda listed: listed.comment == tag


def _forward_ids(ipt: Iptables, prefix: str) -> list[str]:
    """Containers with a goto in the forward chain, in its order: those with a chain of
    their own (and every container, in a chain made before device groups)."""
    return list(dict.fromkeys(ipt.select(FILTER, chains.forward_chain(prefix),
                                         lambda listed: chains.iface_id(listed.in_iface))))


def _group_ids(prefix: str) -> set[str]:
    """Containers whose host veth is in this prefix's device group."""
    names = kernel.links_in_group(chains.device_group(prefix), "w-")
    return {cid for name in names if (cid := chains.iface_id(name)) is not None}


def _in_group(prefix: str, container_id: str) -> bool:
    return kernel.link_group(chains.host_iface(container_id)) == chains.device_group(prefix)


def _nat_ids(ipt: Iptables, prefix: str) -> list[str]:
    return sorted(cid for c in ipt.chains(NAT)
                  if (cid := chains.instance_id(prefix, c)) is not None)


# ----------------------------------------------------------------- one container

def setup_container(prefix: str, container_id: str, netns_pid: int, network: IPv4Network,
                    mtu: int) -> dict:
    """Links (veth, addresses, route) for one container; the record.

    Its veth is born in the server's device group, which the host chains match: until its
    first net_in or net_out, a container adds no rule to any table (see
    chains.forward_rules). On failure, what was made stays behind: `teardown_container`
    removes it.
    """
    chains.check_prefix(prefix)
    kernel.combined(lambda ipt: _require_host_chains(ipt, prefix, _CONTAINER_HOST_CHAINS))
    record = veth.setup_links(container_id, netns_pid, network, mtu,
                              chains.device_group(prefix))
    return {**record, "prefix": prefix, "netns_pid": netns_pid}


def teardown_container(prefix: str, container_id: str, netns_pid: int | None = None) -> None:
    """Remove the container's veth, ifb, chains and jumps; whatever of them exists.

    `netns_pid` is the process whose netns the container has (the record's), if known:
    once it is dead, the veth goes with its netns (see veth.teardown_links).
    """
    veth.teardown_links(container_id, netns_pid)
    teardown_chains(prefix, container_id)


def recover_chains(prefix: str, container_id: str) -> None:
    """Recovery's first step for a live container: its veth joins the device group (if
    setup_host did not find it: a veth of a container that had no goto of its own), and
    the chains and rules the container had go, as a new container has none; recovery then
    applies its recorded net_in and net_out rules again, which make them anew, so rules
    deleted behind our back come back and none is doubled."""
    chains.check_prefix(prefix)
    chains.check_id(container_id)
    kernel.join_group(chains.host_iface(container_id), chains.device_group(prefix))

    def change(ipt: Iptables) -> None:
        _require_host_chains(ipt, prefix, _CONTAINER_HOST_CHAINS)
        _delete_container_rules(ipt, prefix, container_id)

    kernel.combined(change)


def teardown_chains(prefix: str, container_id: str) -> None:
    """Remove the container's chains and the jumps to them; harmless if already gone."""
    chains.check_prefix(prefix)
    chains.check_id(container_id)
    kernel.combined(lambda ipt: _delete_container_rules(ipt, prefix, container_id))


def _delete_container_rules(ipt: Iptables, prefix: str, container_id: str) -> None:
    """Delete every rule and chain of the container, the jumps before the chains they
    jump to, in one transaction: no rule is left pointing at a deleted chain."""
    ipt.delete(FILTER, chains.forward_chain(prefix), chains.forward_goto(prefix, container_id))
    instance = chains.instance_chain(prefix, container_id)
    ipt.flush(FILTER, instance)  # it may goto the log chain
    ipt.delete_chain(FILTER, chains.log_chain(prefix, container_id))
    ipt.delete_chain(FILTER, instance)
    _delete_nat_chain(ipt, prefix, container_id)


def _delete_nat_chain(ipt: Iptables, prefix: str, container_id: str) -> None:
    ipt.delete(NAT, chains.prerouting_chain(prefix),
               chains.nat_instance_jump(prefix, container_id))
    ipt.delete_chain(NAT, chains.instance_chain(prefix, container_id))


_CONTAINER_HOST_CHAINS = ((FILTER, chains.forward_chain), (FILTER, chains.default_chain),
                          (FILTER, chains.input_chain), (FILTER, chains.host_chain),
                          (RAW, chains.antispoof_chain))
_NET_IN_HOST_CHAINS = ((NAT, chains.prerouting_chain),)


def _require_host_chains(ipt: Iptables, prefix: str,
                         needed: tuple[tuple[str, Callable[[str], str]], ...]) -> None:
    missing = [f"{table}/{name(prefix)}" for table, name in needed
               if not ipt.has_chain(table, name(prefix))]
    if missing:
        raise kernel.KernelError(
            f"iptables: host chains missing ({', '.join(missing)}); run setup_host first")


# ---------------------------------------------------------------- NetIn, NetOut

def net_in(prefix: str, container_id: str, container_ip: str, host_port: int,
           container_port: int) -> None:
    """Forward TCP to any local address on host_port to the container's container_port.

    The container's nat chain and the jump to it are made with its first rule.
    """
    rule = rules.net_in_rule(container_id, container_ip, host_port, container_port)
    instance = chains.instance_chain(prefix, container_id)

    def change(ipt: Iptables) -> None:
        _require_host_chains(ipt, prefix, _NET_IN_HOST_CHAINS)
        if not ipt.has_chain(NAT, instance) and not _is_set_up(ipt, prefix, container_id):
            raise kernel.KernelError(f"iptables -t {FILTER}: no chain {instance}")  # torn down
        if ipt.ensure_chain(NAT, instance):
            ipt.append(NAT, chains.prerouting_chain(prefix),
                       chains.nat_instance_jump(prefix, container_id))
        ipt.append(NAT, instance, rule)

    kernel.combined(change)


def net_out(prefix: str, container_id: str, rule: rules.NetOutRule) -> None:
    """Allow the container the traffic `rule` describes (inserted at the top of its chain).

    A rule that logs goes to the container's log chain, made with the first such rule.
    """
    spec = rules.net_out_rule(prefix, container_id, rule)
    instance = chains.instance_chain(prefix, container_id)
    log = chains.log_chain(prefix, container_id)

    def change(ipt: Iptables) -> None:
        if not ipt.has_chain(FILTER, instance):
            _make_instance_chain(ipt, prefix, container_id)
        if rule.log and ipt.ensure_chain(FILTER, log):
            _fill(ipt, FILTER, log, chains.log_rules(prefix, container_id), flush=False)
        ipt.insert(FILTER, instance, spec)

    kernel.combined(change)


def _make_instance_chain(ipt: Iptables, prefix: str, container_id: str) -> None:
    """The container's filter chain, going to the default chain, and its forward goto to
    it (above the group's rule). A container whose veth is not in the group is torn down
    (or was never set up): nothing is made for it."""
    instance = chains.instance_chain(prefix, container_id)
    if not _in_group(prefix, container_id):
        raise kernel.KernelError(f"iptables -t {FILTER}: no chain {instance}")
    ipt.ensure_chain(FILTER, instance)
    _fill(ipt, FILTER, instance, chains.instance_rules(prefix), flush=False)
    ipt.insert(FILTER, chains.forward_chain(prefix), chains.forward_goto(prefix, container_id))


def _is_set_up(ipt: Iptables, prefix: str, container_id: str) -> bool:
    """Whether the container has its filter chain or its veth in the group."""
    return (ipt.has_chain(FILTER, chains.instance_chain(prefix, container_id))
            or _in_group(prefix, container_id))
