"""The only module of this plugin that touches the kernel.

iptables through python-iptables (the LEGACY filter, nat and raw tables and ip6tables'
filter table, one transaction at a time, under the xtables lock the iptables-legacy CLI
also takes), links, addresses and routes through netlink (`Rtnl`: pyroute2's messages on a
plain socket), tc through pyroute2's IPRoute, setns(2) through ctypes, and sysctls through
/proc/sys (a container's through a procfs instance of its own: fsopen(2) through ctypes);
whether a link or a process is still there from sysfs and /proc, which take no lock. No
subprocesses.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from warden_iptables_net.chains import FILTER, FILTER6, Listed, Rule

if TYPE_CHECKING:
    import iptc

T = TypeVar("T")

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
IPV4_CONF = "/proc/sys/net/ipv4/conf"
IPV6_CONF = "/proc/sys/net/ipv6/conf"  # absent when the kernel runs without IPv6
PSCHED = "/proc/net/psched"
SYS_CLASS_NET = "/sys/class/net"
IPTABLES_MATCHES = "/proc/net/ip_tables_matches"
MODULES = "/lib/modules"
# match: (its module, the kernel option that builds it)
NEEDED_MATCHES = {"devgroup": ("xt_devgroup", "CONFIG_NETFILTER_XT_MATCH_DEVGROUP"),
                  "rpfilter": ("ipt_rpfilter", "CONFIG_IP_NF_MATCH_RPFILTER")}
LINK_POLL = 0.0005  # seconds between looks while a dying netns takes its veth along
XTABLES_LOCK = os.environ.get("XTABLES_LOCKFILE", "/run/xtables.lock")
CLONE_NEWNET = 0x40000000
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFF0000
ROOT_HANDLE = 0x10000  # "1:"
ETH_P_ALL = 0x0003
_NLMSGHDR = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, seq, pid
_NLMSGERR = struct.Struct("=i")  # struct nlmsgerr starts with the (negative) errno
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
NLM_F_CREATE_NEW = NLM_F_CREATE | NLM_F_EXCL

# python-iptables keeps one cached handle per table for the whole process, so every
# transaction (from any thread) is serialised here.
_iptables_lock = threading.Lock()
_libc = ctypes.CDLL(None, use_errno=True)


class KernelError(RuntimeError):
    """A kernel operation failed; the message says what, on which object, and why."""


def host_unavailable_reason() -> str | None:
    """None when this host has what the driver needs (IPv4 networking, python-iptables able
    to load libiptc, the matches the rules use), else what is missing, with the fix."""
    if not os.path.exists(IP_FORWARD):
        return "the kernel has no IPv4 networking"
    try:
        import iptc  # noqa: F401  (loads libiptc: the legacy tables)
    except Exception as exc:  # ImportError or the library's own load error
        return f"python-iptables cannot load libiptc: {exc} (apt-get install iptables)"
    missing = missing_matches()
    if missing:
        return "the kernel has no iptables match " + ", ".join(
            f"{name} ({NEEDED_MATCHES[name][1]})" for name in missing)
    return None


def missing_matches() -> list[str]:
    """The matches of NEEDED_MATCHES that the kernel neither has registered nor can load
    (the first rule using a match loads its module; before the first rule of all, ip_tables
    itself may be a module not loaded yet, and IPTABLES_MATCHES absent)."""
    registered = set(_text_or_nothing(IPTABLES_MATCHES).split())
    modules = os.path.join(MODULES, os.uname().release)
    known = "".join(_text_or_nothing(os.path.join(modules, index))
                    for index in ("modules.dep", "modules.builtin"))
    return [name for name, (module, _) in NEEDED_MATCHES.items()
            if name not in registered and f"/{module}.ko" not in known]


def _text_or_nothing(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


# ------------------------------------------------------------------------ iptables

class Iptables:
    """One transaction on the legacy tables (`FILTER6` is ip6tables' filter table); see
    `iptables()`."""

    def __init__(self) -> None:
        import iptc  # late: a host without libiptc fails here, not at plugin import

        self._iptc = iptc
        self._tables: dict[str, iptc.Table] = {}
        self._dirty: set[str] = set()

    def chains(self, table: str) -> list[str]:
        return [chain.name for chain in self._table(table).chains]

    def has_chain(self, table: str, chain: str) -> bool:
        return bool(self._table(table).is_chain(chain))

    def ensure_chain(self, table: str, chain: str) -> bool:
        """Create `chain` unless it exists; True when it was created now."""
        if self.has_chain(table, chain):
            return False
        self._change(table, "create chain", chain, None, lambda t: t.create_chain(chain))
        return True

    def flush(self, table: str, chain: str) -> None:
        if self.has_chain(table, chain):
            self._change(table, "flush", chain, None, lambda t: t.flush_entries(chain))

    def delete_chain(self, table: str, chain: str) -> None:
        """Remove `chain` and its rules if it exists (it must no longer be referenced)."""
        if self.has_chain(table, chain):
            self.flush(table, chain)
            self._change(table, "delete chain", chain, None, lambda t: t.delete_chain(chain))

    def append(self, table: str, chain: str, rule: Rule) -> None:
        self._change(table, "append to", chain, rule,
                     lambda t: self._chain(t, chain).append_rule(self._rule(rule, table)))

    def insert(self, table: str, chain: str, rule: Rule, position: int = 0) -> None:
        self._change(table, "insert into", chain, rule,
                     lambda t: self._chain(t, chain).insert_rule(self._rule(rule, table),
                                                                 position))

    def delete(self, table: str, chain: str, rule: Rule) -> int:
        """Delete every copy of exactly `rule` from `chain`; return how many."""
        if not self.has_chain(table, chain):
            return 0
        try:
            candidate = self._rule(rule, table)
        except self._iptc.XTablesError:
            return 0  # it names a chain that is gone, so no rule can point there
        count = 0
        while self._delete_one(table, chain, candidate):
            count += 1
        return count

    def delete_where(self, table: str, chain: str, wanted: Callable[[Listed], bool]) -> int:
        """Delete the rules of `chain` for which `wanted(listed rule)` is true. Each rule is
        decoded only as far as `wanted` reads it (see _ListedEntry)."""
        # Copies, taken before any delete: deleting frees the entries walked.
        found = [listed.rule for listed in self._walk(table, chain) if wanted(listed)]
        for entry in found:
            self._change(table, "delete from", chain, None,
                         lambda t, entry=entry: self._chain(t, chain).delete_rule(entry))
        return len(found)

    def select(self, table: str, chain: str, pick: Callable[[Listed], T | None]) -> list[T]:
        """What `pick` gives for each rule of `chain`, in order, but None; [] without the
        chain. Each rule is decoded only as far as `pick` reads it (see _ListedEntry)."""
        return [value for listed in self._walk(table, chain)
                if (value := pick(listed)) is not None]

    def _walk(self, table: str, chain: str) -> list[_ListedEntry]:
        """The rules of `chain` as they stand; valid until the table next changes."""
        if not self.has_chain(table, chain):
            return []
        handle = self._table(table)
        walked = self._chain(handle, chain)
        listed = []
        entry = handle.first_rule(chain)
        while entry:
            listed.append(_ListedEntry(walked, entry, table != FILTER6))
            entry = handle.next_rule(entry)
        return listed

    def commit(self) -> None:
        for name in sorted(self._dirty):
            try:
                self._tables[name].commit()
            except self._iptc.IPTCError as error:
                raise KernelError(f"iptables: commit table {name}: {error}") from error

    def _table(self, name: str) -> iptc.Table:
        if name not in self._tables:
            if name == FILTER6:
                table = self._iptc.Table6(FILTER, autocommit=False)
            else:
                table = self._iptc.Table(name, autocommit=False)
            table.refresh()  # the cached handle may be older than other writers
            self._tables[name] = table
        return self._tables[name]

    def _chain(self, table: iptc.Table, chain: str) -> iptc.Chain:
        return self._iptc.Chain(table, chain)

    def _change(self, table: str, action: str, chain: str, rule: Rule | None,
                change: Callable[[Any], object]) -> None:
        try:
            change(self._table(table))
        except (self._iptc.IPTCError, self._iptc.XTablesError, ValueError) as error:
            what = f" {rule.render()}" if rule is not None else ""
            raise KernelError(f"iptables -t {table}: {action} {chain}{what}: {error}") \
                from error
        self._dirty.add(table)

    def _delete_one(self, table: str, chain: str, candidate: iptc.Rule) -> bool:
        try:
            self._chain(self._table(table), chain).delete_rule(candidate)
        except self._iptc.IPTCError:
            return False  # libiptc reports "no such rule" with assorted errnos
        self._dirty.add(table)
        return True

    def _rule(self, spec: Rule, table: str) -> iptc.Rule:
        rule = self._iptc.Rule6() if table == FILTER6 else self._iptc.Rule()
        if spec.src is not None:
            rule.src = spec.src
        if spec.dst is not None:
            rule.dst = spec.dst
        if spec.in_iface is not None:
            rule.in_interface = spec.in_iface
        if spec.out_iface is not None:
            rule.out_interface = spec.out_iface
        if spec.protocol is not None:
            rule.protocol = spec.protocol
        for wanted in spec.matches:
            found = rule.create_match(wanted.name)
            for key, value in wanted.params:
                found.set_parameter(key, value)
        target = rule.create_target(spec.target, goto=spec.goto)
        for key, value in spec.target_params:
            target.set_parameter(key, value)
        return rule


class _ListedEntry:
    """A rule of a table being walked, as `Listed`, decoded as far as it is read.

    python-iptables decodes a rule whole (its matches and target through libxtables),
    ~50 us a rule; with a rule per container in a chain and a walk per container, a
    restart with 1,000 containers spent over a minute there. The input interface of an
    IPv4 rule is read from the raw entry; the rest decodes the rule, once.
    """

    def __init__(self, chain: iptc.Chain, entry: Any, ipv4: bool) -> None:
        self._chain = chain
        self._entry = entry
        self._ipv4 = ipv4

    @functools.cached_property
    def rule(self) -> iptc.Rule:
        return self._chain.table.create_rule(self._entry, self._chain)

    @functools.cached_property
    def in_iface(self) -> str | None:
        if not self._ipv4:
            return self.rule.in_interface
        return _in_iface(self._entry.ip)

    @property
    def target(self) -> str:
        target = self.rule.target
        return target.name if target is not None else ""

    @property
    def goto(self) -> bool:
        target = self.rule.target
        return bool(target is not None and target.goto)

    @functools.cached_property
    def comment(self) -> str | None:
        comment = None
        for found in self.rule.matches:
            if found.name == "comment":
                comment = (found.get_all_parameters().get("comment") or [None])[0]
        return comment


_IFNAMSIZ = 16


def _in_iface(ip: Any) -> str | None:
    """`-i` of a struct ipt_ip as python-iptables' Rule.in_interface gives it: None when
    unset, "!" before a negated name, "+" after a prefix (its mask stops at the name's
    end; an exact name's mask covers the terminating NUL too)."""
    mask = ip.iniface_mask
    if not mask:
        return None
    name = ip.iniface.decode()
    text = ("!" if ip.invflags & type(ip).IPT_INV_VIA_IN else "") + name
    if len(name) == len(mask):
        text += "+"
    return text[:_IFNAMSIZ]


@contextmanager
def iptables() -> Iterator[Iptables]:
    """A transaction: changes are committed when the block ends, dropped if it raises.

    Dropping needs no work: the next transaction re-reads each table it uses, which
    frees the old handle without committing it (autocommit is off).
    """
    with _iptables_lock, _xtables_lock():
        transaction = Iptables()
        yield transaction
        transaction.commit()


_waiting: list[tuple[Callable[[Iptables], Any], Future]] = []
_turn = threading.Condition()  # guards _waiting and _busy
_busy = False


def combined(work: Callable[[Iptables], T]) -> T:
    """Run `work` in a transaction, sharing it with the callers waiting at the same time.

    A legacy table is read whole and written whole on every commit, whatever changed:
    with 1,000 containers' chains, a transaction of one container's setup cost 12 ms and
    one of eight containers' setups 17 ms. So one caller at a time runs every change
    queued so far, in order, in one transaction, while the others wait; when it is done,
    the first of them whose change is still queued takes the next batch. If any change or
    the commit fails, nothing of the batch was committed, and each change runs again in a
    transaction of its own, so a change fails or lands exactly as it would have alone.
    """
    global _busy
    outcome: Future = Future()
    with _turn:
        _waiting.append((work, outcome))
        while not outcome.done():
            if _busy:
                _turn.wait()
                continue
            _busy = True
            batch = _waiting[:]
            _waiting.clear()
            _turn.release()
            try:
                with _iptables_lock, _xtables_lock():
                    _run_batch(batch)
            except BaseException as error:  # the lock file: no change ran
                for _, queued in batch:
                    queued.set_exception(error)
            finally:
                _turn.acquire()
                _busy = False
                _turn.notify_all()
    return outcome.result()


def _run_batch(batch: list[tuple[Callable[[Iptables], Any], Future]]) -> None:
    if len(batch) > 1:
        try:
            transaction = Iptables()
            results = [work(transaction) for work, _ in batch]
            transaction.commit()
        except Exception:
            pass  # uncommitted: each runs alone below
        else:
            for (_, outcome), result in zip(batch, results):
                outcome.set_result(result)
            return
    for work, outcome in batch:
        try:
            transaction = Iptables()
            result = work(transaction)
            transaction.commit()
        except BaseException as error:  # handed to its caller, whatever it is
            outcome.set_exception(error)
        else:
            outcome.set_result(result)


@contextmanager
def _xtables_lock() -> Iterator[None]:
    # The iptables-legacy CLI (`-w`) takes this flock around its read-modify-write of a
    # table; libiptc does the same read-modify-write, so it must hold it too.
    fd = os.open(XTABLES_LOCK, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def enable_ip_forward() -> None:
    with open(IP_FORWARD, "w") as f:
        f.write("1\n")


@functools.cache
def has_ipv6() -> bool:
    """Whether the kernel runs with IPv6 (not booted with ipv6.disable=1)."""
    return os.path.isdir(IPV6_CONF)


# Paths below /proc/sys/net cost a lookup that grows with the live containers: procfs keeps
# a directory entry for each network namespace that looked a name up, all under the one
# shared /proc/sys/net, and compares the name against each ("ipv6": one per container, as
# long as it lives). At 900 live containers, writing accept_ra and disable_ipv6 of a new host
# veth by path took 1.29 and 0.96 ms, relative to an open conf directory 0.02 and 0.03 ms;
# IPv6 off in a fresh container netns 2.5 ms by path, 0.28 ms through a procfs instance of
# its own (medians of 30-60 writes beside the bench's server, with 0 and 900 containers).
_host_confs: dict[str, int] = {}
_host_confs_lock = threading.Lock()


def _host_conf(family_conf: str) -> int:
    """A descriptor of the host netns's `family_conf` directory, opened once and kept: the
    namespace is fixed when it is opened, so only host-side writes use it."""
    with _host_confs_lock:
        if family_conf not in _host_confs:
            _host_confs[family_conf] = os.open(family_conf,
                                               os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return _host_confs[family_conf]


def harden_host_link(ifname: str) -> None:
    """On the host end of a container veth: strict reverse-path filter, no IPv6 at all,
    no Router Advertisements taken from the container. Called in the host's netns.

    The kernel applies max(conf/all, conf/<ifname>) of rp_filter, so an `all` of 2
    (loose) would win over this 1.
    """
    _write_sysctl(f"{ifname}/rp_filter", "1", IPV4_CONF, _host_conf(IPV4_CONF))
    if has_ipv6():
        conf = _host_conf(IPV6_CONF)
        _write_sysctl(f"{ifname}/accept_ra", "0", IPV6_CONF, conf)
        _write_sysctl(f"{ifname}/disable_ipv6", "1", IPV6_CONF, conf)


def _disable_ipv6_in_netns() -> None:
    """In the calling thread's fresh netns: IPv6 off on every link. The kernel copies a
    write to `all` into `default` and into each existing link's own value (lo and the
    container end), so one write does what four did. The file is opened in a procfs of
    its own, where this namespace's is the only entry to compare against."""
    if not has_ipv6():
        return
    with _own_procfs() as proc:
        if proc is None:
            _write_sysctl(os.path.join(IPV6_CONF, "all", "disable_ipv6"), "1")
        else:
            _write_sysctl("sys/net/ipv6/conf/all/disable_ipv6", "1", "/proc", proc)


_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432  # the same on every architecture
_FSOPEN_CLOEXEC = _FSMOUNT_CLOEXEC = 0x1
_FSCONFIG_CMD_CREATE = 6


@contextmanager
def _own_procfs() -> Iterator[int | None]:
    """A new procfs instance, mounted nowhere (fsopen, fsmount), as a directory descriptor;
    None on a kernel that cannot make one (before 5.2). It goes when the descriptor
    closes. /proc/sys below it resolves to the calling thread's network namespace."""
    context = _libc.syscall(_SYS_FSOPEN, b"proc", _FSOPEN_CLOEXEC)
    if context < 0:
        if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):
            yield None
            return
        raise KernelError(f"fsopen proc: {os.strerror(ctypes.get_errno())}")
    try:
        if _libc.syscall(_SYS_FSCONFIG, context, _FSCONFIG_CMD_CREATE, None, None, 0) != 0:
            raise KernelError(f"make a procfs: {os.strerror(ctypes.get_errno())}")
        mount = _libc.syscall(_SYS_FSMOUNT, context, _FSMOUNT_CLOEXEC, 0)
        if mount < 0:
            raise KernelError(f"fsmount a procfs: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(context)
    try:
        yield mount
    finally:
        os.close(mount)


def _write_sysctl(path: str, value: str, under: str = "", dir_fd: int | None = None) -> None:
    """Write `value` to `path` (relative to `dir_fd`, the directory `under` names, if
    given). /proc/sys/net resolves to the network namespace of the thread that opens it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as error:
        shown = os.path.join(under, path) if under else path
        raise KernelError(f"sysctl: write {value} to {shown}: {error.strerror}") from error


# ------------------------------------------------------------------ links (netlink)

@contextmanager
def _netlink(action: str) -> Iterator[IPRoute]:
    """pyroute2's IPRoute, for the requests whose answers must be decoded (tc)."""
    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as error:
        raise KernelError(f"netlink: {action}: {error.args[-1]}") from error


class Rtnl:
    """One NETLINK_ROUTE socket, in the network namespace of the thread that opens it, for
    requests that need only the kernel's acknowledgement.

    pyroute2's message classes encode each request; this class only carries it and reads the
    ack. Why not pyroute2's IPRoute for these: since 0.9 its synchronous API runs an asyncio
    event loop under every call, ~0.3-0.5 ms a call and ~0.3-0.9 ms a socket, where the kernel
    work of an address or a link state is ~0.1 ms; a container's create makes seven such
    calls. Requests whose answer must be decoded (qdisc reads, tc) stay with IPRoute.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def add_veth(self, name: str, peer: str, mtu: int | None, *, netns_pid: int | None = None,
                 netns_fd: int | None = None, group: int = 0) -> None:
        """A veth pair, `name` up in this socket's netns (in device group `group`), `peer`
        born in the netns of `netns_pid` or of the namespace file `netns_fd`."""
        peer_attrs = [("IFLA_IFNAME", peer)]
        if netns_pid is not None:
            peer_attrs.append(("IFLA_NET_NS_PID", netns_pid))
        if netns_fd is not None:
            peer_attrs.append(("IFLA_NET_NS_FD", netns_fd))
        if mtu is not None:
            peer_attrs.append(("IFLA_MTU", mtu))
        data = {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}
        msg = _new_link(name, mtu, "veth", data)
        if group:
            msg["attrs"].append(("IFLA_GROUP", group))
        self._request(msg, RTM_NEWLINK, NLM_F_CREATE_NEW)

    def add_ifb(self, name: str, mtu: int | None) -> None:
        self._request(_new_link(name, mtu, "ifb"), RTM_NEWLINK, NLM_F_CREATE_NEW)

    def set_up(self, index: int) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        msg["flags"] = msg["change"] = IFF_UP
        self._request(msg, RTM_NEWLINK)

    def delete_link(self, name: str) -> None:
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        self._request(msg, RTM_DELLINK)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self._request(msg, RTM_NEWADDR, NLM_F_CREATE_NEW)

    def add_default_route(self, gateway: str) -> None:
        msg = rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["scope"] = RT_SCOPE_UNIVERSE
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway)]
        self._request(msg, RTM_NEWROUTE, NLM_F_CREATE_NEW)

    def _request(self, msg, msg_type: int, flags: int = 0) -> None:
        """Send `msg` as `msg_type` and wait for its ack; NetlinkError(errno) on refusal."""
        self._seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        while True:
            code = _ack(self._sock.recv(65536), self._seq)
            if code is not None:
                if code:
                    raise NetlinkError(code, os.strerror(code))
                return


def _new_link(name: str, mtu: int | None, kind: str, data: dict | None = None) -> ifinfmsg:
    msg = ifinfmsg()
    msg["flags"] = msg["change"] = IFF_UP
    info = [("IFLA_INFO_KIND", kind)] + ([("IFLA_INFO_DATA", data)] if data else [])
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": info})]
    if mtu is not None:
        msg["attrs"].append(("IFLA_MTU", mtu))
    return msg


def _ack(data: bytes, seq: int) -> int | None:
    """The errno of the ack for `seq` in `data` (0 for success), None if it is not there."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _, msg_seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if msg_seq == seq and msg_type == NLMSG_ERROR:
            return -_NLMSGERR.unpack_from(data, offset + _NLMSGHDR.size)[0]
        offset += max((length + 3) & ~3, _NLMSGHDR.size)
    return None


@contextmanager
def _rtnl(action: str) -> Iterator[Rtnl]:
    """A socket for requests that need only an ack (links, addresses, routes)."""
    try:
        with Rtnl() as nl:
            yield nl
    except NetlinkError as error:
        raise KernelError(f"netlink: {action}: {error.args[-1]}") from error


def create_veth(host: str, peer: str, netns_pid: int, mtu: int, address: str,
                prefixlen: int, group: int = 0) -> None:
    """Create a veth pair whose `peer` end is born in the netns of `netns_pid`.

    The host end comes up with `address/prefixlen`, in device group `group` from its first
    packet on (the group is part of the request that makes it). Creating the peer in place
    is one netlink call; moving it afterwards would cost a namespace move (DESIGN.md).
    """
    with _rtnl(f"add veth {host} with peer {peer} in netns of pid {netns_pid}") as nl:
        nl.add_veth(host, peer, mtu, netns_pid=netns_pid, group=group)
    with _rtnl(f"add address {address}/{prefixlen} to {host}") as nl:
        nl.add_address(_index(host), address, prefixlen)


def configure_in_netns(netns_pid: int, ifname: str, address: str, prefixlen: int,
                       gateway: str) -> None:
    """Inside the netns of `netns_pid`: IPv6 off on every link (before any is up, so no
    link-local address is ever made), `ifname` up with its address, lo up, default route."""
    def configure() -> None:
        with _rtnl(f"configure {ifname} in netns of pid {netns_pid}") as nl:
            index = _index(ifname)
            _disable_ipv6_in_netns()
            nl.add_address(index, address, prefixlen)
            nl.set_up(index)
            nl.set_up(_index("lo"))
            nl.add_default_route(gateway)

    in_netns(netns_pid, configure)


def in_netns(netns_pid: int, work: Callable[[], T]) -> T:
    """Run `work` in a fresh thread that has joined the network namespace of `netns_pid`.

    setns(CLONE_NEWNET) changes only the calling thread; the thread ends with `work`,
    and sockets it opened stay in that namespace.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            _setns(netns_pid)
            outcome["value"] = work()
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=run, name=f"netns-{netns_pid}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _setns(pid: int) -> None:
    path = f"/proc/{pid}/ns/net"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise KernelError(f"open {path}: {error.strerror}") from error
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise KernelError(f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def ensure_ifb(ifname: str, mtu: int | None) -> None:
    """Create the ifb device `ifname` unless it exists; bring it up."""
    with _rtnl(f"add ifb {ifname}") as nl:
        try:
            nl.add_ifb(ifname, mtu)
        except NetlinkError as error:
            if error.code != errno.EEXIST:
                raise
            nl.set_up(_index(ifname))


def delete_link(ifname: str) -> bool:
    """Delete `ifname` (a veth goes with its peer); False if it did not exist."""
    with _rtnl(f"delete link {ifname}") as nl:
        try:
            nl.delete_link(ifname)
        except NetlinkError as error:
            if error.code == errno.ENODEV:  # never there, or gone meanwhile (its netns just died)
                return False
            raise
    return True


def link_mtu(ifname: str) -> int | None:
    """The MTU of the host's link `ifname`, None if there is no such link."""
    return _link_number(ifname, "mtu")


def link_group(ifname: str) -> int | None:
    """The device group of the host's link `ifname`, None if there is no such link."""
    return _link_number(ifname, "netdev_group")


def _link_number(ifname: str, attribute: str) -> int | None:
    """A number sysfs shows of the host's link `ifname` (no netlink, no rtnl lock)."""
    try:
        with open(os.path.join(SYS_CLASS_NET, ifname, attribute)) as f:
            return int(f.read())
    except FileNotFoundError:
        return None


class LinkCounters:
    """rx_bytes and tx_bytes of host links from sysfs (no netlink, no rtnl lock), their files
    kept open per link and re-read with pread: 2 us for both where opening them each time took
    33 us, and Info, which every Run answers with, reads them. A link gone since its files
    were opened reads as gone (kernfs refuses a removed node's files)."""

    def __init__(self) -> None:
        self._fds: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def read(self, ifname: str) -> tuple[int, int] | None:
        """(rx_bytes, tx_bytes) of `ifname`, None if there is no such link."""
        with self._lock:
            for _ in range(2):  # kept files of a link deleted since: the name opened afresh
                fds = self._fds.get(ifname) or self._open(ifname)
                if fds is None:
                    return None
                try:
                    return int(os.pread(fds[0], 32, 0)), int(os.pread(fds[1], 32, 0))
                except OSError:
                    self._close(ifname)
            return None

    def forget(self, ifname: str) -> None:
        """Close the files of `ifname` (its link is being deleted)."""
        with self._lock:
            self._close(ifname)

    def _open(self, ifname: str) -> tuple[int, int] | None:
        base = os.path.join(SYS_CLASS_NET, ifname, "statistics")
        try:
            rx = os.open(os.path.join(base, "rx_bytes"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            tx = os.open(os.path.join(base, "tx_bytes"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            os.close(rx)
            return None
        self._fds[ifname] = (rx, tx)
        return rx, tx

    def _close(self, ifname: str) -> None:
        for fd in self._fds.pop(ifname, ()):
            os.close(fd)


def link_exists(ifname: str) -> bool:
    """Whether the host has a link named `ifname`, from sysfs: no netlink, no rtnl lock."""
    return os.path.exists(os.path.join(SYS_CLASS_NET, ifname))


def wait_link_gone(ifname: str, timeout: float) -> bool:
    """Poll sysfs until the host has no link named `ifname`; False if it is still there
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while link_exists(ifname):
        if time.monotonic() >= deadline:
            return False
        time.sleep(LINK_POLL)
    return True


def process_alive(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has: its namespaces are
    released)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def link_names() -> list[str]:
    """Names of the host's links, from sysfs."""
    return sorted(os.listdir(SYS_CLASS_NET))


def join_group(ifname: str, group: int) -> bool:
    """Put the host's link `ifname` in device group `group`; False if there is no such link."""
    try:
        with open(os.path.join(SYS_CLASS_NET, ifname, "netdev_group"), "w") as f:
            f.write(f"{group}\n")
    except FileNotFoundError:
        return False
    return True


def links_in_group(group: int, starting: str = "") -> list[str]:
    """Names of the host's links starting with `starting` that are in device group `group`."""
    return [name for name in link_names()
            if name.startswith(starting) and link_group(name) == group]


def _index(ifname: str) -> int:
    """The index of `ifname` in the calling thread's network namespace (SIOCGIFINDEX)."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError as error:
        raise KernelError(f"netlink: no link named {ifname}") from error


# ---------------------------------------------------------------------- tc (netlink)

def replace_root_tbf(ifname: str, rate: int, burst: int, latency: str) -> None:
    """Make a tbf (`rate` bytes/s, `burst` bytes) the root qdisc of `ifname`."""
    with _netlink(f"replace root qdisc of {ifname} with tbf") as ipr:
        ipr.tc("replace", "tbf", _index(ifname), ROOT_HANDLE,
               rate=rate, burst=burst, latency=latency)


def redirect_ingress(ifname: str, to_ifname: str) -> None:
    """Replace the ingress qdisc of `ifname` with one redirecting everything to `to_ifname`."""
    with _netlink(f"redirect ingress of {ifname} to {to_ifname}") as ipr:
        index, target = _index(ifname), _index(to_ifname)
        try:
            ipr.tc("del", "ingress", index)
        except NetlinkError as error:
            if error.code not in (errno.ENOENT, errno.EINVAL):  # no ingress qdisc yet
                raise
        ipr.tc("add", "ingress", index)
        ipr.tc("add-filter", "u32", index, parent=TC_H_INGRESS, prio=10,
               protocol=ETH_P_ALL, keys=["0x0/0x0+0"], target=TC_H_INGRESS | 1,
               action={"kind": "mirred", "direction": "egress", "action": "redirect",
                       "ifindex": target})


def root_tbf(ifname: str) -> tuple[int, int] | None:
    """(rate in bytes/s, buffer in psched ticks) of the root tbf of `ifname`, or None."""
    with _netlink(f"read qdiscs of {ifname}") as ipr:
        if not link_exists(ifname):
            return None
        for qdisc in ipr.get_qdiscs(index=_index(ifname)):
            if qdisc["parent"] == TC_H_ROOT and qdisc.get_attr("TCA_KIND") == "tbf":
                parms = qdisc.get_nested("TCA_OPTIONS", "TCA_TBF_PARMS")
                return int(parms["rate"]), int(parms["buffer"])
    return None


def psched_ticks_per_usec() -> float:
    """Kernel scheduler ticks per microsecond, as tc computes it from /proc/net/psched."""
    with open(PSCHED) as f:
        t2us, us2t, clock_res = (int(word, 16) for word in f.read().split()[:3])
    return t2us / us2t * (clock_res / 1_000_000)
