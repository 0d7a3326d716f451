"""What a container's root needs beyond the base rootfs, written after the copy: /etc/hostname,
/etc/hosts, /etc/resolv.conf, the user and group vcap and vcap's home (warden-facts §10.6),
and the /dev and /proc directories wshd mounts on. Every path is resolved inside the root, and
files are replaced by rename, so a base rootfs whose /etc/resolv.conf is a symlink to a host
path gets the link replaced, never followed. The text builders are pure.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import kernel

USER = "vcap"
HOME = f"/home/{USER}"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
LOOPBACK_RESOLVER = "nameserver 127.0.0.1"


@dataclass(frozen=True)
class Identity:
    """The container as its /etc describes it; `root` and `vcap` are host (uid, gid) pairs."""

    container_id: str
    container_ip: str | None
    host_ip: str | None
    uid: int
    root: tuple[int, int]
    vcap: tuple[int, int]


def hosts_text(container_id: str, container_ip: str | None) -> str:
    own = f"{container_ip} {container_id}\n" if container_ip else ""
    return f"127.0.0.1 localhost\n{own}"


def resolv_conf_text(dns_servers: Sequence[str], host_resolv: str, host_ip: str | None) -> str:
    """The configured servers; else the host's file, except that a host resolving through its
    own loopback sends the container to its gateway (the host end of its veth)."""
    if dns_servers:
        return "".join(f"nameserver {server}\n" for server in dns_servers)
    if host_ip and host_resolv.strip() == LOOPBACK_RESOLVER:
        return f"nameserver {host_ip}\n"
    return host_resolv


def with_entry(table: str, name: str, entry: str) -> str:
    """`table` (passwd or group text) with the line of `name` replaced by `entry`, or added."""
    lines = [line for line in table.splitlines() if line.strip()]
    kept = [line for line in lines if line.split(":", 1)[0] != name]
    if len(kept) == len(lines):
        kept.append(entry)
    else:
        kept.insert(next(i for i, line in enumerate(lines) if line.split(":", 1)[0] == name),
                    entry)
    return "".join(f"{line}\n" for line in kept)


def write_all(root: Path, who: Identity, dns_servers: Sequence[str],
              host_resolv_conf: Path = HOST_RESOLV_CONF) -> None:
    """Write every file above into the mounted `root`."""
    try:
        host_resolv = host_resolv_conf.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        host_resolv = ""
    passwd_line = f"{USER}:x:{who.uid}:{who.uid}::{HOME}:/bin/bash"
    root_fd = os.open(root, kernel.O_DIR)
    try:
        for name in ("dev", "proc", "etc", "home"):
            os.close(_dir_in(root_fd, "/", name, who.root))
        etc = kernel.open_in_root(root_fd, "/etc")
        try:
            _replace(etc, "hostname", f"{who.container_id}\n", who.root)
            _replace(etc, "hosts", hosts_text(who.container_id, who.container_ip), who.root)
            _replace(etc, "resolv.conf",
                     resolv_conf_text(dns_servers, host_resolv, who.host_ip), who.root)
            _replace(etc, "passwd", with_entry(_read(etc, "passwd"), USER, passwd_line), who.root)
            _replace(etc, "group", with_entry(_read(etc, "group"), USER, f"{USER}:x:{who.uid}:"),
                     who.root)
        finally:
            os.close(etc)
        os.close(_dir_in(root_fd, "/home", USER, who.vcap))
    finally:
        os.close(root_fd)


def _dir_in(root_fd: int, parent: str, name: str, owner: tuple[int, int]) -> int:
    """An fd of directory `parent/name` in the root, made 0755 for `owner` when missing."""
    parent_fd = kernel.open_in_root(root_fd, parent)
    try:
        try:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
            made = True
        except FileExistsError:
            made = False
        # from the root again: a symlink there is followed, inside the root
        fd = kernel.open_in_root(root_fd, f"{parent.rstrip('/')}/{name}")
        if made:
            os.fchown(fd, *owner)
            os.fchmod(fd, 0o755)
        return fd
    finally:
        os.close(parent_fd)


def _read(dir_fd: int, name: str) -> str:
    """A regular file's text; "" when there is none or it is a symlink (replaced, not followed)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ""
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8", errors="surrogateescape")


def _replace(dir_fd: int, name: str, text: str, owner: tuple[int, int]) -> None:
    tmp = f".{name}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8", errors="surrogateescape"))
            os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), 0o644)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
