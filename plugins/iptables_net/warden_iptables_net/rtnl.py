"""rtnetlink requests that need only the kernel's acknowledgement, on a plain socket.

pyroute2's message classes encode each request; this module only carries it and reads the
ack. Why not pyroute2's IPRoute for these: since 0.9 its synchronous API runs an asyncio
event loop under every call, ~0.3-0.5 ms a call and ~0.3-0.9 ms a socket, where the kernel
work of an address or a link state is ~0.1 ms; a container's create makes seven such calls.
Requests whose answer must be decoded (qdisc reads, tc) stay with IPRoute in `kernel`.

Used by `kernel` only: it turns NetlinkError into KernelError with what was being done.
"""

from __future__ import annotations

import os
import socket
import struct
from types import TracebackType

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, seq, pid
_ERROR = struct.Struct("=i")  # struct nlmsgerr starts with the (negative) errno
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
CREATE = NLM_F_CREATE | NLM_F_EXCL


class Rtnl:
    """One NETLINK_ROUTE socket in the network namespace of the thread that opens it."""

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
                 netns_fd: int | None = None) -> None:
        """A veth pair, `name` up in this socket's netns, `peer` born in the netns of
        `netns_pid` or of the namespace file `netns_fd`."""
        peer_attrs = [("IFLA_IFNAME", peer)]
        if netns_pid is not None:
            peer_attrs.append(("IFLA_NET_NS_PID", netns_pid))
        if netns_fd is not None:
            peer_attrs.append(("IFLA_NET_NS_FD", netns_fd))
        if mtu is not None:
            peer_attrs.append(("IFLA_MTU", mtu))
        data = {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}
        self._request(_new_link(name, mtu, "veth", data), RTM_NEWLINK, CREATE)

    def add_ifb(self, name: str, mtu: int | None) -> None:
        self._request(_new_link(name, mtu, "ifb"), RTM_NEWLINK, CREATE)

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
        self._request(msg, RTM_NEWADDR, CREATE)

    def add_default_route(self, gateway: str) -> None:
        msg = rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["scope"] = RT_SCOPE_UNIVERSE
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway)]
        self._request(msg, RTM_NEWROUTE, CREATE)

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
    while offset + _HEADER.size <= len(data):
        length, msg_type, _, msg_seq, _ = _HEADER.unpack_from(data, offset)
        if msg_seq == seq and msg_type == NLMSG_ERROR:
            return -_ERROR.unpack_from(data, offset + _HEADER.size)[0]
        offset += max((length + 3) & ~3, _HEADER.size)
    return None
