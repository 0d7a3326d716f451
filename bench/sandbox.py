"""What a script does around an OCI runtime so that its container gets what one of ours gets:
an overlay over the same rootfs, a network namespace joined to the host by a veth pair with
addresses and a default route, and groups with limits in four cgroup v1 controllers.

In-process and as cheap as we know how (DESIGN.md, "Performance design"): syscalls through
ctypes, one netlink socket per namespace, the container end of the veth born in its netns,
and the netns left to die with the container instead of deleting the veth. Every object's
name carries the run's tag, and `Sandboxes.close` removes whatever is left under it.
Sandboxes may be made and removed from several threads at once (the sustained measure's
clients).

Netlink is pyroute2's own synchronous socket (IPRSocket) with its message classes: the same
requests our network driver sends, without depending on that plugin's internals, and without
IPRoute, whose per-call event loop would add ~0.5 ms to each of a sandbox's six requests.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import json
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRSocket
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

CLONE_NEWNET = 0x40000000
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "cpuacct", "memory", "devices")
LIMITS = {"memory": ("memory.limit_in_bytes", str(512 * 1024**2)), "cpu": ("cpu.shares", "512")}
# Peers' /30s: apart from our server's pool (10.244.0.0/22), never routed off the host.
PEER_NETWORK = ipaddress.IPv4Network("10.245.0.0/16")
PEER_SUBNETS = PEER_NETWORK.num_addresses // 4
LINK_GONE_TIMEOUT = 30.0
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
NEW = NLM_F_CREATE | NLM_F_EXCL

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


class Rtnl:
    """Link, address and route requests on one rtnetlink socket, in the network namespace of
    the thread that first uses it; each waits for the kernel's ack."""

    def __init__(self) -> None:
        self._sock = IPRSocket()
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def add_veth(self, name: str, peer: str, netns_fd: int) -> None:
        """A veth pair: `name` here, up; `peer` born in the netns of the file `netns_fd`."""
        peer_attrs = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", netns_fd)]
        info = [("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]})]
        msg = ifinfmsg()
        msg["flags"] = msg["change"] = IFF_UP
        msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": info})]
        self._request(msg, RTM_NEWLINK, NEW)

    def set_up(self, index: int) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        msg["flags"] = msg["change"] = IFF_UP
        self._request(msg, RTM_NEWLINK)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self._request(msg, RTM_NEWADDR, NEW)

    def add_default_route(self, gateway: str) -> None:
        msg = rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway)]
        self._request(msg, RTM_NEWROUTE, NEW)

    def _request(self, msg, msg_type: int, flags: int = 0) -> None:
        """Send `msg` and wait for its ack; the kernel's refusal is raised (NetlinkError)."""
        self._seq += 1
        self._sock.put(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, msg_seq=self._seq)
        while True:
            for reply in self._sock.get():
                header = reply["header"]
                if header["type"] == NLMSG_ERROR and header["sequence_number"] == self._seq:
                    if header["error"] is not None:
                        raise header["error"]
                    return


@dataclass
class Sandbox:
    """One container's surroundings; `netns_path` and `cgroups_path` go into config.json."""

    name: str
    bundle: Path
    netns_fd: int
    host_iface: str
    cgroups_path: str
    subnet: int = field(default=-1)  # index of its /30 in PEER_NETWORK

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    @property
    def netns_path(self) -> str:
        return f"/proc/{os.getpid()}/fd/{self.netns_fd}"


class Sandboxes:
    """Makes and removes sandboxes named `<tag><n>` under `workdir`, from any thread."""

    def __init__(self, workdir: Path, tag: str, rootfs: Path) -> None:
        self.workdir = workdir
        self.tag = tag
        self.rootfs = rootfs
        self._lock = threading.Lock()  # the counters, the lists and the host netlink socket
        self._count = 0
        self._removed: list[str] = []  # host ends of veths whose netns was let go
        self._subnet_cursor = 0
        self._in_use: set[int] = set()
        self._host_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._rtnl = Rtnl()

    def make(self, config: dict) -> Sandbox:
        """Bundle with `config` (its netns path and cgroupsPath filled in), overlay, network,
        cgroups. On failure, what was made is removed again."""
        with self._lock:
            self._count += 1
            name = f"{self.tag}{self._count}"
            subnet = self._next_subnet()
        sandbox = Sandbox(name=name, bundle=self.workdir / name, netns_fd=-1,
                          host_iface=f"{name}h", cgroups_path=f"/{self.tag}/{name}",
                          subnet=subnet)
        network = ipaddress.IPv4Network((int(PEER_NETWORK.network_address) + 4 * subnet, 30))
        try:
            self._mount_overlay(sandbox)
            sandbox.netns_fd = self._make_network(sandbox, network)
            self._make_cgroups(sandbox)
            _write_config(sandbox, config)
        except BaseException:
            self.remove(sandbox)
            raise
        return sandbox

    def remove(self, sandbox: Sandbox) -> None:
        """After the runtime deleted the container: let the netns (and so the veth pair) die,
        remove the groups, unmount and delete the bundle."""
        if sandbox.netns_fd >= 0:
            os.close(sandbox.netns_fd)
            sandbox.netns_fd = -1
            with self._lock:
                self._removed.append(sandbox.host_iface)
        with self._lock:
            self._in_use.discard(sandbox.subnet)
        for controller in CONTROLLERS:
            _rmdir(CGROUP_ROOT / controller / self.tag / sandbox.name)
        if os.path.ismount(sandbox.rootfs):
            _check(_libc.umount2(os.fsencode(sandbox.rootfs), 0), f"umount {sandbox.rootfs}")
        shutil.rmtree(sandbox.bundle, ignore_errors=True)

    def close(self) -> list[str]:
        """Remove everything left under the tag; return what could not be removed."""
        left = [line.split()[1] for line in open("/proc/self/mounts")
                if line.split()[1].startswith(str(self.workdir))]
        for point in reversed(left):
            _libc.umount2(os.fsencode(point), 2)  # MNT_DETACH: the run is over
        for hierarchy in CGROUP_ROOT.iterdir():
            parent = hierarchy / self.tag
            if parent.is_dir():
                for group in sorted(parent.iterdir(), reverse=True):
                    if group.is_dir():
                        _rmdir(group)
                _rmdir(parent)
        leftovers = self.wait_links_gone()
        leftovers += [name for name in os.listdir("/sys/class/net")
                      if name.startswith(self.tag) and name not in leftovers]
        self._rtnl.close()
        os.close(self._host_ns)
        leftovers += [str(p) for p in CGROUP_ROOT.glob(f"*/{self.tag}")]
        return leftovers

    def pending(self) -> dict[str, int]:
        """Objects under the tag right now: bundles (each an overlay until removed), host
        ends of veths (live, or waiting for their netns to die) and cgroups."""
        return {"bundles": len(os.listdir(self.workdir)) if self.workdir.is_dir() else 0,
                "veths": sum(name.startswith(self.tag) for name in os.listdir("/sys/class/net")),
                "cgroups": len(groups_under(self.tag))}

    # -- pieces ----------------------------------------------------------------------------
    def _next_subnet(self) -> int:
        """The /30 after the last one handed out, skipping those of live sandboxes. A /30 comes
        round again only after all PEER_SUBNETS others: a removed sandbox's veth, which keeps
        its address until its netns dies, is long gone by then."""
        if len(self._in_use) >= PEER_SUBNETS:
            raise RuntimeError(f"sandbox: all {PEER_SUBNETS} /30s of {PEER_NETWORK} in use")
        while True:
            subnet = self._subnet_cursor
            self._subnet_cursor = (subnet + 1) % PEER_SUBNETS
            if subnet not in self._in_use:
                self._in_use.add(subnet)
                return subnet
    def _mount_overlay(self, sandbox: Sandbox) -> None:
        upper, work = sandbox.bundle / "upper", sandbox.bundle / "work"
        for path in (upper, work, sandbox.rootfs):
            path.mkdir(parents=True)
        data = f"lowerdir={self.rootfs},upperdir={upper},workdir={work}".encode()
        _check(_libc.mount(b"overlay", os.fsencode(sandbox.rootfs), b"overlay", 0, data),
               f"mount overlay on {sandbox.rootfs}")

    def _make_network(self, sandbox: Sandbox, network: ipaddress.IPv4Network) -> int:
        host_ip, container_ip = str(network[1]), str(network[2])
        outcome: dict = {}

        def inside() -> None:  # unshare and setns change only this thread
            try:
                _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
                outcome["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                with Rtnl() as nl:
                    nl.add_veth("eth0", sandbox.host_iface, self._host_ns)
                    index = socket.if_nametoindex("eth0")
                    nl.add_address(index, container_ip, 30)
                    nl.set_up(index)
                    nl.set_up(socket.if_nametoindex("lo"))
                    nl.add_default_route(host_ip)
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=inside, name=f"netns-{sandbox.name}")
        thread.start()
        thread.join()
        if "error" in outcome:
            if "fd" in outcome:
                os.close(outcome["fd"])
            raise outcome["error"]
        index = socket.if_nametoindex(sandbox.host_iface)
        with self._lock:
            self._rtnl.add_address(index, host_ip, 30)
            self._rtnl.set_up(index)
        return int(outcome["fd"])

    def _make_cgroups(self, sandbox: Sandbox) -> None:
        for controller in CONTROLLERS:
            group = CGROUP_ROOT / controller / self.tag / sandbox.name
            group.parent.mkdir(exist_ok=True)
            group.mkdir()
            if controller in LIMITS:
                name, value = LIMITS[controller]
                (group / name).write_text(value)

    def wait_links_gone(self) -> list[str]:
        """A dying netns takes its veth pair with it a little later (RCU): poll until the
        host ends of removed sandboxes are gone; return those still there at the deadline."""
        deadline = time.monotonic() + LINK_GONE_TIMEOUT
        while True:
            names = set(os.listdir("/sys/class/net"))
            with self._lock:
                self._removed = [n for n in self._removed if n in names]
                waiting = list(self._removed)
            if not waiting or time.monotonic() > deadline:
                return waiting
            time.sleep(0.002)


def _write_config(sandbox: Sandbox, config: dict) -> None:
    config = json.loads(json.dumps(config))
    config["hostname"] = sandbox.name
    config["linux"]["cgroupsPath"] = sandbox.cgroups_path
    for namespace in config["linux"]["namespaces"]:
        if namespace["type"] == "network":
            namespace["path"] = sandbox.netns_path
    (sandbox.bundle / "config.json").write_text(json.dumps(config))


def groups_under(parent: str) -> set[str]:
    """Names of the groups below `parent` in any cgroup hierarchy (v1: one per controller)."""
    return {group.name for hierarchy in CGROUP_ROOT.glob(f"*/{parent}")
            for group in hierarchy.iterdir() if group.is_dir()}


def _rmdir(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
