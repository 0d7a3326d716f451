"""The server's iptables state and each container's share of it, plus the container's
links (through `veth`): what the driver calls.

Every function is idempotent and safe after a crash at any line: it rebuilds what it
owns from names derived from the prefix and container id (facts §10.3, §10.4).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from ipaddress import IPv4Network

from warden_iptables_net import chains, kernel, rules, veth
from warden_iptables_net.chains import FILTER, FILTER6, NAT, RAW, Listed
from warden_iptables_net.kernel import Iptables

# setup_container's second threads (chains for concurrent creates queue on one lock anyway).
_CHAIN_MAKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="iptables-chains")


# ----------------------------------------------------------------------- the host

def setup_host(prefix: str, pool_network: IPv4Network | str, allow_networks: list[str],
               deny_networks: list[str], allow_host_access: bool) -> None:
    """(Re)build the host chains and hooks for `prefix`; enable forwarding.

    Containers whose chains exist keep their forward and input gotos, anti-spoofing rule
    and DNAT jump, so a restart does not cut live containers off (nor unguard them).
    Running it twice changes nothing.
    """
    chains.check_prefix(prefix)
    pool = IPv4Network(pool_network, strict=False)
    with kernel.iptables() as ipt:
        _setup_filter(ipt, prefix, pool, allow_networks, deny_networks, allow_host_access)
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
    """Ids of the containers with a goto in the forward chain or a nat chain under this
    prefix."""
    chains.check_prefix(prefix)
    with kernel.iptables() as ipt:
        return _container_ids(ipt, prefix)


def _setup_filter(ipt: Iptables, prefix: str, pool: IPv4Network, allow: list[str],
                  deny: list[str], allow_host_access: bool) -> None:
    forward, default = chains.forward_chain(prefix), chains.default_chain(prefix)
    ingress = chains.ingress_chain(prefix)
    host, input_ = chains.host_chain(prefix), chains.input_chain(prefix)
    ids = _forward_ids(ipt, prefix)
    chained = {cid for cid in ids if ipt.has_chain(FILTER, chains.instance_chain(prefix, cid))}
    for chain in (forward, default, ingress, host, input_):
        ipt.ensure_chain(FILTER, chain)
    _fill(ipt, FILTER, default, chains.default_rules(allow, deny))
    _fill(ipt, FILTER, forward, chains.forward_rules(prefix, ids, chained, pool))
    _fill(ipt, FILTER, ingress, chains.ingress_rules(pool))
    _fill(ipt, FILTER, host, chains.host_rules(prefix, allow_host_access))
    # Each chain keeps its order, so that a second run changes nothing.
    ordered = [cid for cid in _goto_ids(ipt, input_) if cid in ids]
    ordered += [cid for cid in ids if cid not in ordered]
    _fill(ipt, FILTER, input_, [chains.input_goto(prefix, cid) for cid in ordered])
    _hook(ipt, FILTER, "FORWARD", chains.forward_jump(prefix))
    _hook(ipt, FILTER, "FORWARD", chains.ingress_jump(prefix))
    _hook(ipt, FILTER, "INPUT", chains.input_jump(prefix))
    # Earlier versions put the host block in INPUT itself, by source range; this can go
    # once no host carries one.
    ipt.delete_where(FILTER, "INPUT", _tagged(chains.host_block_tag(prefix)))


def _setup_raw(ipt: Iptables, prefix: str) -> None:
    """The antispoof chain keeps the rules of containers that have gotos; others go."""
    antispoof = chains.antispoof_chain(prefix)
    ipt.ensure_chain(RAW, antispoof)
    live = {chains.host_iface(cid) for cid in _forward_ids(ipt, prefix)}
    ipt.delete_where(RAW, antispoof, lambda listed: listed.in_iface not in live)
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
    """Containers with a goto in the forward chain, in its order: all that are set up (its
    only other rule, the DROP, names no interface)."""
    return _goto_ids(ipt, chains.forward_chain(prefix))


def _goto_ids(ipt: Iptables, chain: str) -> list[str]:
    """Containers with a rule on their veth in filter's `chain`, in the chain's order."""
    return list(dict.fromkeys(ipt.select(FILTER, chain,
                                         lambda listed: chains.iface_id(listed.in_iface))))


def _nat_ids(ipt: Iptables, prefix: str) -> list[str]:
    return sorted(cid for c in ipt.chains(NAT)
                  if (cid := chains.instance_id(prefix, c)) is not None)


def _container_ids(ipt: Iptables, prefix: str) -> list[str]:
    return sorted({*_forward_ids(ipt, prefix), *_nat_ids(ipt, prefix)})


# ----------------------------------------------------------------- one container

def setup_container(prefix: str, container_id: str, netns_pid: int, network: IPv4Network,
                    mtu: int) -> dict:
    """Links (veth, addresses, route, ifb) and chains for one container; the record.

    The chains are made on a second thread while this one makes the links: each waits on
    the kernel part of the time, and create waits for the longer of the two (links ~2.4 ms,
    chains ~1 ms). No traffic crosses the veth before both are done, as the container runs
    nothing before create returns; chains go last on teardown. On failure, what was made
    stays behind: `teardown_container` removes it.
    """
    made = _CHAIN_MAKERS.submit(setup_chains, prefix, container_id, veth.addresses(network)[1],
                                rerun=False)
    try:
        record = veth.setup_links(container_id, netns_pid, network, mtu)
    finally:
        wait([made])
    made.result()
    return {**record, "prefix": prefix, "netns_pid": netns_pid}


def teardown_container(prefix: str, container_id: str, netns_pid: int | None = None,
                       container_ip: str | None = None) -> None:
    """Remove the container's veth, ifb, chains and jumps; whatever of them exists.

    `netns_pid` is the process whose netns the container has (the record's), if known:
    once it is dead, the veth goes with its netns (see veth.teardown_links).
    `container_ip`, if known, names its anti-spoofing rule exactly (see teardown_chains).
    """
    veth.teardown_links(container_id, netns_pid)
    teardown_chains(prefix, container_id, container_ip)


def setup_chains(prefix: str, container_id: str, container_ip: str, rerun: bool = True) -> None:
    """(Re)create the container's gotos in the forward and input chains and its
    anti-spoofing rule.

    Its filter chain is made by its first net_out (see chains.forward_goto), its log chain
    by the first that logs, its nat chain (with the jump to it) by the first net_in: a
    legacy table is read and written whole on every change, and its cost grows with its
    chains (at 1,000 containers, reading the filter table took 3.5 ms with two chains each;
    the nat table 1.2 ms with one); every packet arriving at the host also walked a jump
    per container in nat PREROUTING.

    A re-run (`rerun`, recovery) first removes everything the last run and the container's
    rules made; recovery then re-applies the recorded net_in and net_out rules, which make
    their chains again. A create's first run (`rerun=False`) skips that search of chains
    that hold a rule per container: nothing of a new id can be there, as teardown_chains
    deletes the gotos, the anti-spoofing rule and the DNAT jump before the chains they
    belong to, in the same transaction.
    """
    chains.check_prefix(prefix)
    chains.check_id(container_id)
    forward = chains.forward_chain(prefix)

    def change(ipt: Iptables) -> None:
        _require_host_chains(ipt, prefix, _CONTAINER_HOST_CHAINS)
        if rerun:
            _delete_container_rules(ipt, prefix, container_id, container_ip)
        # at the top: above the DROP
        ipt.insert(FILTER, forward, chains.forward_goto(prefix, container_id, False))
        ipt.append(FILTER, chains.input_chain(prefix), chains.input_goto(prefix, container_id))
        ipt.append(RAW, chains.antispoof_chain(prefix),
                   chains.antispoof(container_id, container_ip))

    kernel.combined(change)


def teardown_chains(prefix: str, container_id: str, container_ip: str | None = None) -> None:
    """Remove the container's chains and the jumps to them; harmless if already gone.

    `container_ip` names the anti-spoofing rule exactly (see _delete_container_rules); a
    host teardown knows only chain names and goes without.
    """
    chains.check_prefix(prefix)
    chains.check_id(container_id)
    kernel.combined(lambda ipt: _delete_container_rules(ipt, prefix, container_id, container_ip))


def _delete_container_rules(ipt: Iptables, prefix: str, container_id: str,
                            container_ip: str | None) -> None:
    """Delete every rule and chain of the container, in an order that leaves no rule
    pointing at a deleted chain.

    The anti-spoofing rule is deleted as the exact rule setup_chains made for
    `container_ip` (libiptc finds it in C). Without the address, or if that rule is not
    there, the rules on the container's veth are found by walking the chain, a rule per
    container read in Python (decoded whole, as before kernel._ListedEntry, a teardown at
    1,000 containers took 66 ms, nearly nine tenths of it in that walk; read as far as
    needed, a restart with 1,000 containers, which re-runs setup_chains for each, still
    spent seconds in it)."""
    forward = chains.forward_chain(prefix)
    for chained in (True, False):
        ipt.delete(FILTER, forward, chains.forward_goto(prefix, container_id, chained))
    ipt.delete(FILTER, chains.input_chain(prefix), chains.input_goto(prefix, container_id))
    antispoof = chains.antispoof_chain(prefix)
    if container_ip is None or not ipt.delete(RAW, antispoof,
                                              chains.antispoof(container_id, container_ip)):
        iface = chains.host_iface(container_id)
        ipt.delete_where(RAW, antispoof, lambda listed: listed.in_iface == iface)
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
    """The container's filter chain, going to the default chain, and its forward goto
    moved there from the default chain. A container without that goto is torn down (or
    was never set up): nothing is made for it."""
    forward = chains.forward_chain(prefix)
    instance = chains.instance_chain(prefix, container_id)
    if not ipt.delete(FILTER, forward, chains.forward_goto(prefix, container_id, False)):
        raise kernel.KernelError(f"iptables -t {FILTER}: no chain {instance}")
    ipt.ensure_chain(FILTER, instance)
    _fill(ipt, FILTER, instance, chains.instance_rules(prefix), flush=False)
    ipt.insert(FILTER, forward, chains.forward_goto(prefix, container_id, True))


def _is_set_up(ipt: Iptables, prefix: str, container_id: str) -> bool:
    """Whether the container has its goto in the forward chain (to either target)."""
    return (ipt.has_chain(FILTER, chains.instance_chain(prefix, container_id))
            or container_id in _forward_ids(ipt, prefix))
