"""The per-container files under /etc (hostname, hosts, resolv.conf, the vcap user) and
vcap's home (warden-facts §10.6).

They are written after the union (overlay or aufs) is mounted, through the mount, so the
union copies up what they change into the upper dir and the shared lower rootfs is never
touched; a lower /etc's mode and owner survive, and renumbering a pre-existing vcap can
re-own its files (copy-up again). Every path is resolved inside the root (inroot.py), so a
rootfs whose /etc/resolv.conf is a symlink to an absolute path gets the link replaced, not
followed. The text builders are pure; the writers take the root and every host input as
arguments.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from warden_framework.idmap import IdMap
from warden_rootfs_common import inroot

USER = "vcap"
HOME = "/home/vcap"
SHELL = "/bin/bash"
SKEL = "/etc/skel"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
LOOPBACK_RESOLVER = "nameserver 127.0.0.1"


@dataclass(frozen=True)
class ContainerUser:
    """What add_container_user did: vcap's ids, and the ids it had in the lower rootfs when
    they differed (renumbered), with the number of files re-owned from them."""

    uid: int
    gid: int
    renumbered_from: tuple[int, int] | None = None
    reowned: int = 0


# ---- pure text builders -------------------------------------------------------------

def hostname_text(container_id: str) -> str:
    return f"{container_id}\n"


def hosts_text(container_id: str, container_ip: str) -> str:
    return f"127.0.0.1 localhost\n{container_ip} {container_id}\n"


def resolv_conf_text(dns_servers: Sequence[str], host_resolv: str, host_ip: str) -> str:
    """One nameserver line per configured server; else the host's file, except that a host
    resolving through its own loopback (file exactly `nameserver 127.0.0.1`) sends the
    container to its gateway, the host side of its veth."""
    if dns_servers:
        return "".join(f"nameserver {server}\n" for server in dns_servers)
    if host_resolv.strip() == LOOPBACK_RESOLVER:
        return f"nameserver {host_ip}\n"
    return host_resolv


def _find(lines: list[str], name: str) -> int | None:
    for i, line in enumerate(lines):
        if line.split(":", 1)[0] == name:
            return i
    return None


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _joined(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def with_user(passwd: str, uid: int, gid: int) -> tuple[str, int | None]:
    """passwd text with vcap at uid/gid (appended, or renumbered in place); and vcap's
    previous uid when it was renumbered, else None."""
    lines = _lines(passwd)
    i = _find(lines, USER)
    if i is None:
        return _joined([*lines, f"{USER}:x:{uid}:{gid}::{HOME}:{SHELL}"]), None
    fields = (lines[i].split(":") + [""] * 7)[:7]
    old = int(fields[2]) if fields[2].isdigit() else None
    fields[2], fields[3] = str(uid), str(gid)
    lines[i] = ":".join(fields)
    return _joined(lines), (old if old != uid else None)


def with_group(group: str, gid: int) -> tuple[str, int | None]:
    """group text with group vcap at gid (appended or renumbered); its previous gid or None."""
    lines = _lines(group)
    i = _find(lines, USER)
    if i is None:
        return _joined([*lines, f"{USER}:x:{gid}:"]), None
    fields = (lines[i].split(":") + [""] * 4)[:4]
    old = int(fields[2]) if fields[2].isdigit() else None
    fields[2] = str(gid)
    lines[i] = ":".join(fields)
    return _joined(lines), (old if old != gid else None)


def with_shadow(shadow: str) -> str:
    """shadow text with a locked-password vcap entry, unless one is there."""
    lines = _lines(shadow)
    if _find(lines, USER) is not None:
        return _joined(lines)
    return _joined([*lines, f"{USER}:!::0:99999:7:::"])


# ---- writers --------------------------------------------------------------------------

def write_network_files(root: Path, container_id: str, container_ip: str, host_ip: str,
                        dns_servers: Sequence[str] = (),
                        host_resolv_conf: Path = HOST_RESOLV_CONF,
                        id_map: IdMap | None = None) -> None:
    """Write /etc/hostname, /etc/hosts and /etc/resolv.conf inside `root`, owned by the
    container's root (`id_map` says which host id that is)."""
    try:
        host_resolv = host_resolv_conf.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        host_resolv = ""
    files = {
        "hostname": hostname_text(container_id),
        "hosts": hosts_text(container_id, container_ip),
        "resolv.conf": resolv_conf_text(dns_servers, host_resolv, host_ip),
    }
    root_owner = _host_ids(id_map, 0, 0)
    with inroot.opened_root(root) as root_fd, _etc_dir(root_fd, root_owner) as etc:
        for name, text in files.items():
            inroot.replace_file(etc, name, text.encode(), mode=0o644, owner=root_owner)


def add_container_user(root: Path, uid: int, gid: int | None = None,
                       id_map: IdMap | None = None) -> ContainerUser:
    """Give `root` the user and group vcap at uid/gid (gid defaults to uid) and its home.

    A vcap already in the rootfs keeps its entry but is renumbered, and every file in the
    tree owned by its old uid or gid is re-owned (through the union: copied up). uid and gid
    are the container's; files get the host ids `id_map` gives them.
    """
    gid = uid if gid is None else gid
    with inroot.opened_root(root) as root_fd:
        old_uid, old_gid = _update_tables(root_fd, uid, gid, _host_ids(id_map, 0, 0))
        reowned = 0
        if old_uid is not None or old_gid is not None:
            reowned = _reown(root_fd, _host_or_none(id_map, old_uid),
                             _host_or_none(id_map, old_gid), *_host_ids(id_map, uid, gid))
        _make_home(root_fd, _host_ids(id_map, uid, gid), _host_ids(id_map, 0, 0))
    renumbered = None
    if old_uid is not None or old_gid is not None:
        renumbered = (uid if old_uid is None else old_uid, gid if old_gid is None else old_gid)
    return ContainerUser(uid=uid, gid=gid, renumbered_from=renumbered, reowned=reowned)


def write_etc_files(root: Path, container_id: str, container_ip: str, host_ip: str, uid: int,
                    dns_servers: Sequence[str] = (),
                    host_resolv_conf: Path = HOST_RESOLV_CONF,
                    id_map: IdMap | None = None) -> ContainerUser:
    """All of a container's /etc set-up: write_network_files then add_container_user."""
    write_network_files(root, container_id, container_ip, host_ip, dns_servers,
                        host_resolv_conf, id_map)
    return add_container_user(root, uid, id_map=id_map)


def _host_ids(id_map: IdMap | None, uid: int, gid: int) -> tuple[int, int]:
    """The host ids of container ids uid, gid (the same without a user namespace)."""
    return (id_map.to_host(uid), id_map.to_host(gid)) if id_map else (uid, gid)


def _host_or_none(id_map: IdMap | None, inside: int | None) -> int | None:
    return inside if inside is None or id_map is None else id_map.to_host(inside)


def _etc_dir(root_fd: int, root_owner: tuple[int, int] = (0, 0)) -> AbstractContextManager[int]:
    return inroot.dir_in_root(root_fd, "/etc", 0o755, root_owner)


def _update_tables(root_fd: int, uid: int, gid: int,
                   root_owner: tuple[int, int]) -> tuple[int | None, int | None]:
    passwd = inroot.read_text(root_fd, "/etc/passwd") or ""
    group = inroot.read_text(root_fd, "/etc/group") or ""
    shadow = inroot.read_text(root_fd, "/etc/shadow")
    new_passwd, old_uid = with_user(passwd, uid, gid)
    new_group, old_gid = with_group(group, gid)
    with _etc_dir(root_fd, root_owner) as etc:
        inroot.replace_file(etc, "passwd", new_passwd.encode(errors="surrogateescape"))
        inroot.replace_file(etc, "group", new_group.encode(errors="surrogateescape"))
        if shadow is not None:
            new_shadow = with_shadow(shadow)
            inroot.replace_file(etc, "shadow", new_shadow.encode(errors="surrogateescape"))
    return old_uid, old_gid


def _reown(root_fd: int, old_uid: int | None, old_gid: int | None, uid: int, gid: int) -> int:
    """chown what the old ids owned, on the root's filesystem only; returns how many."""
    root_dev = os.fstat(root_fd).st_dev
    count = 0
    pending = [os.dup(root_fd)]
    while pending:
        dir_fd = pending.pop()
        try:
            with os.scandir(dir_fd) as entries:
                names = [e.name for e in entries]
            for name in names:
                st = inroot.lstat_at(dir_fd, name)
                if st is None:
                    continue
                if st.st_uid == old_uid or st.st_gid == old_gid:
                    _chown_keeping_mode(dir_fd, name, st,
                                        uid if st.st_uid == old_uid else -1,
                                        gid if st.st_gid == old_gid else -1)
                    count += 1
                if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                    pending.append(inroot.open_subdir(dir_fd, name))
        finally:
            os.close(dir_fd)
    return count


def _chown_keeping_mode(dir_fd: int, name: str, st: os.stat_result, uid: int, gid: int) -> None:
    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode) and mode & (stat.S_ISUID | stat.S_ISGID):
        # chown cleared the set-id bits; put them back through an fd (no name to follow)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _make_home(root_fd: int, owner: tuple[int, int], root_owner: tuple[int, int]) -> None:
    """vcap's home, owned by `owner` (host ids), in a parent owned by root (`root_owner`)."""
    uid, gid = owner
    parent, _ = inroot.split(HOME)
    with inroot.dir_in_root(root_fd, parent, 0o755, root_owner):
        home, created = inroot.open_or_make_dir(root_fd, HOME, 0o755, (uid, gid))
    try:
        os.fchown(home, uid, gid)
        if created:
            _copy_skel(root_fd, home, uid, gid)
    finally:
        os.close(home)


def _copy_skel(root_fd: int, home: int, uid: int, gid: int) -> None:
    """Copy the regular files at the top of /etc/skel into a new home, as useradd -m does."""
    try:
        skel = inroot.open_dir(root_fd, SKEL)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        with os.scandir(skel) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    inroot.replace_file(home, entry.name, inroot.read_at(skel, entry.name),
                                        mode=stat.S_IMODE(st.st_mode), owner=(uid, gid))
    finally:
        os.close(skel)
