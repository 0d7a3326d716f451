"""Issue 11, attacks on the host through the server: creates that reach for host paths, rootfs
with planted symlinks and devices, copy_in of set-id files and into system directories, a host
user at the socket and in the depot, and an escape attempt that must leave nothing behind.
Each test is the attack itself on the real kernel and asserts it was refused and left the host
unchanged. The attacks from inside a job are in test_containment_jobs.py."""

from __future__ import annotations

import grp
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from warden_framework.client import Client, ServerError
from warden_framework.testing.server import running_server

from .attacks import (AS_ROOT_AND_VCAP, BIN, NOBODY, as_host_user, attack, attack_dir,  # noqa: F401
                      canary, container_range, create, sh)
from .conftest import ROOTFS, _missing, server_settings


def depot_entries(srv) -> list[str]:
    depot = Path(srv.settings.server.container_depot_path)
    return sorted(os.listdir(depot)) if depot.exists() else []


def nothing_left(client, srv) -> None:
    srv.call(srv.server.wait_cleanups)
    assert list(client.list().handles) == []
    assert depot_entries(srv) == []


# -- 1. binds of host paths -----------------------------------------------------------------


@pytest.mark.parametrize("source", ["/", "/etc", "/root", "/tmp/../etc", "symlink-to-etc",
                                    "symlink-to-root-dir"])
@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_create_refuses_bind_of_host_paths(client, warden, tmp_path, source, mode):
    if source.startswith("symlink"):
        link = tmp_path / source
        link.symlink_to("/etc" if source == "symlink-to-etc" else "/")
        source = str(link)
    refused = f"^bind mount source {re.escape(source)} is not under an allowed path"
    with pytest.raises(ServerError, match=refused):
        client.create(bind_mounts=[{"src_path": source, "dst_path": "/mnt/host", "mode": mode}])
    nothing_left(client, warden)


# -- 5. a host user: the socket and the depot -----------------------------------------------


@pytest.fixture
def open_base():
    """A world-traversable directory under /tmp for a server's socket and depot, so that only
    the server's own modes stand between a host user and them (pytest's tmp dirs are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="warden-containment-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def host_group():
    """A fresh host group with no members; its name."""
    name = "wt" + secrets.token_hex(4)
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    yield name
    subprocess.run(["groupdel", name], check=True, capture_output=True)


@pytest.fixture
def open_server(open_base, host_group):
    """A server whose socket is 0660 for `host_group` and whose depot's parent anyone may enter."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    settings = server_settings(open_base, server={"unix_domain_permissions": 0o660,
                                                  "unix_domain_group": host_group})
    with running_server(settings) as srv:
        yield srv


CONNECT = ("import socket, sys\n"
           "s = socket.socket(socket.AF_UNIX)\n"
           "try:\n    s.connect(sys.argv[1]); print('connected')\n"
           "except OSError as e:\n    print('refused', e.errno)\n")


def test_socket_refuses_host_users_outside_its_group(open_server, host_group):
    python = "/usr/bin/python3"  # the venv's interpreter lives under /root, closed to nobody
    if not os.access(python, os.X_OK):
        pytest.skip(f"needs {python} to connect as a host user")
    path = open_server.settings.server.unix_domain_path
    outsider = as_host_user(python, "-c", CONNECT, path)
    assert outsider.stdout.startswith("refused"), outsider
    member = as_host_user(python, "-c", CONNECT, path, groups=str(grp.getgrnam(host_group).gr_gid))
    assert member.stdout == "connected\n", member
    with Client(path) as root:
        assert root.ping() is not None


def test_host_user_cannot_enter_the_depot_nor_run_a_set_uid_file_left_in_it(open_server, attack_dir):
    path = open_server.settings.server.unix_domain_path
    with Client(path) as client:
        h = create(client, attack_dir)
        sh(client, h, "cp /bin/bash /tmp/sh; chmod 4755 /tmp/sh", privileged=True)
        container = Path(client.info(handle=h).container_path.decode())
        planted = sorted(container.glob("*/tmp/sh"))  # the rootfs mount and the upper layer
        assert planted, "the planted file is not in the container's directory"
        depot = container.parent
        for target in (depot, container, *planted):
            looked = as_host_user("ls", "-la", str(target))
            assert looked.returncode != 0 and "Permission denied" in looked.stderr, (target, looked)
        for target in planted:
            ran = as_host_user(str(target), "-p", "-c", "echo $EUID")
            assert ran.returncode != 0 and ran.stdout == "", (target, ran)
        # Even handed an open file by root, the set-uid bit gives the host user nothing:
        # the rootfs mount is nosuid and the upper layer's file belongs to the container's range.
        first, count = container_range(client, h)
        for target in planted:
            fd = os.open(target, os.O_PATH)
            try:
                ran = as_host_user(f"/proc/self/fd/{fd}", "-p", "-c", "echo $EUID", pass_fds=(fd,))
            finally:
                os.close(fd)
            euid = int(ran.stdout.strip() or NOBODY)
            assert euid == NOBODY or first <= euid < first + count, (target, ran)
            assert euid != 0


# -- 6. a rootfs with planted symlinks ------------------------------------------------------


@pytest.fixture
def evil_rootfs(tmp_path):
    """(rootfs, host dir): a copy of the default rootfs whose /evil* symlinks point at a fresh,
    empty host directory, absolutely, by climbing, and as a bind target itself."""
    host_dir = Path(tempfile.mkdtemp(prefix="warden-evil-", dir="/tmp"))
    rootfs = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(ROOTFS), str(rootfs)], check=True)
    (rootfs / "evil").symlink_to(host_dir)
    (rootfs / "evil2").symlink_to("../../../../../.." + str(host_dir))
    (rootfs / "evil3").symlink_to(host_dir)
    (rootfs / "mnt" / "evil4").symlink_to("../../../../../../proc/1/root" + str(host_dir))
    yield rootfs, host_dir
    for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
        if str(host_dir) in line.split()[4]:
            subprocess.run(["umount", "-l", line.split()[4]], check=False)
    shutil.rmtree(host_dir, ignore_errors=True)


@pytest.mark.parametrize("dst", ["/evil/x", "/evil2/y", "/evil3", "/mnt/evil4/z", "/evil/../evil/x"])
def test_planted_symlinks_never_lead_a_bind_out_of_the_rootfs(client, warden, attack_dir, tmp_path,
                                                             evil_rootfs, dst):
    rootfs, host_dir = evil_rootfs
    src = tmp_path / "src"
    src.mkdir()
    os.chmod(src, 0o755)
    (src / "marker").write_text("bound")
    os.chmod(src / "marker", 0o644)
    try:
        h = create(client, attack_dir, {"src_path": str(src), "dst_path": dst, "mode": "rw"},
                   rootfs=str(rootfs))
    except ServerError:
        nothing_left(client, warden)
    else:
        # made: then inside the container's root, where the symlink leads inside (evil4 leads
        # through /proc, which hides what was made below it: only the host side matters there)
        if not dst.startswith("/mnt/evil4"):
            assert sh(client, h, f"cat {dst}/marker").stdout == b"bound"
        sh(client, h, f"touch {dst}/from-inside", privileged=True)
        client.destroy(handle=h)
        nothing_left(client, warden)
    assert os.listdir(host_dir) == []
    assert str(host_dir) not in open("/proc/self/mountinfo").read()
    assert sorted(os.listdir(src)) in (["marker"], ["from-inside", "marker"])


# -- 7. copy_in -----------------------------------------------------------------------------


def test_copy_in_drops_set_id_bits_and_writes_as_vcap(client, tmp_path):
    h = client.create().handle
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name, mode in (("suid", 0o4755), ("sgid", 0o2755), ("sub/both", 0o6775)):
        shutil.copy("/bin/true", src / name)
        os.chmod(src / name, mode)
    os.chmod(src / "sub", 0o755)
    client.copy_in(handle=h, src_path=str(src) + "/", dst_path="/home/vcap/in")
    vcap = sh(client, h, "id -u").stdout.decode().strip()
    resp = sh(client, h, "cd /home/vcap/in && stat -c '%n %a %u' suid sgid sub sub/both")
    assert resp.stdout.decode().splitlines() == [f"suid 755 {vcap}", f"sgid 755 {vcap}",
                                                 f"sub 755 {vcap}", f"sub/both 775 {vcap}"]


@pytest.mark.parametrize("dst", ["/etc/{name}", "/bin/{name}", "/etc/", "/root/{name}",
                                 "/home/vcap/../../etc/{name}", "/home/vcap/etc-link/{name}",
                                 "/proc/1/root/etc/{name}"])
def test_copy_in_refuses_system_directories(client, tmp_path, dst):
    h = client.create().handle
    name = "evil-" + secrets.token_hex(4)
    src = tmp_path / name
    src.write_text("#!/bin/sh\necho pwned\n")
    os.chmod(src, 0o755)
    sh(client, h, "ln -s /etc /home/vcap/etc-link")
    before = sh(client, h, "ls -la /etc /bin /root", privileged=True).stdout
    with pytest.raises(ServerError):
        client.copy_in(handle=h, src_path=str(src), dst_path=dst.format(name=name))
    assert sh(client, h, "ls -la /etc /bin /root", privileged=True).stdout == before
    assert not os.path.exists(f"/etc/{name}") and not os.path.exists(f"/bin/{name}")


@pytest.mark.parametrize("src", ["/home/vcap/out", "/home/vcap/dir/", "/home/vcap/dir/up"])
def test_copy_out_never_follows_a_planted_symlink_to_a_host_file(client, tmp_path, src):
    secret = canary()
    host = Path("/root") / f"{secrets.token_hex(6)}-canary"
    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, secret.encode())
    os.close(fd)
    try:
        h = client.create().handle
        sh(client, h, f"mkdir -p /home/vcap/dir; ln -s {host} /home/vcap/out; "
                      f"ln -s ../../../../../../..{host} /home/vcap/dir/up",
           privileged=True)
        dst = tmp_path / "out"
        try:
            client.copy_out(handle=h, src_path=src, dst_path=str(dst))
        except ServerError:
            pass
        landed = [dst] + [Path(top) / n for top, _, names in os.walk(dst) for n in names]
        found = [p.read_bytes() for p in landed  # never following a link on the host
                 if os.path.lexists(p) and stat.S_ISREG(os.lstat(p).st_mode)]
        assert not any(secret.encode() in data for data in found)
    finally:
        host.unlink()


# -- 8. devices planted in a rootfs ---------------------------------------------------------


@AS_ROOT_AND_VCAP
def test_device_nodes_planted_in_a_rootfs_do_not_open(client, attack_dir, tmp_path, privileged):
    rootfs = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(ROOTFS), str(rootfs)], check=True)
    disk = os.stat("/").st_dev
    nodes = {"console": (stat.S_IFCHR, os.makedev(5, 1)), "disk": (stat.S_IFBLK, disk),
             "fuse": (stat.S_IFCHR, os.makedev(10, 229)), "mem": (stat.S_IFCHR, os.makedev(1, 1))}
    (rootfs / "planted").mkdir()
    for name, (kind, dev) in nodes.items():
        os.mknod(rootfs / "planted" / name, kind | 0o666, dev)
    h = create(client, attack_dir, rootfs=str(rootfs))
    out = attack(client, h, *(f"open:/planted/{n}" for n in nodes), privileged=privileged)
    assert all(o.result in ("EACCES", "EPERM") for o in out), out


# -- 10. an escape attempt leaves nothing behind ----------------------------------------------


ESCAPE = r"""
{bin} mount:tmpfs:/mnt/t:tmpfs mount:cgroup:/mnt/cg:cgroup:memory unshare:user,mnt,net,pid \
    clone:user,net mknod:/dev/c:c:5:1 bind:/proc/1/root:/mnt/r ptrace:1 syscall:keyctl >/dev/null
ip link add w-evil type veth peer name w-evil2 2>/dev/null
mkdir -p /sys/fs/cgroup/evil 2>/dev/null
(setsid sleep 1000 </dev/null >/dev/null 2>&1 &)
(nohup sleep 1000 </dev/null >/dev/null 2>&1 &)
sleep 1000 </dev/null >/dev/null 2>&1 &
echo done
"""


def host_processes_in(first: int, count: int) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uids = [line for line in open(f"/proc/{pid}/status") if line.startswith("Uid:")][0].split()[1:]
        except (OSError, IndexError):
            continue
        if any(first <= int(u) < first + count for u in uids):
            try:
                comm, _, rest = open(f"/proc/{pid}/stat").read().partition("(")[2].rpartition(")")
            except OSError:
                continue
            if rest.split()[0] != "Z":  # a zombie holds nothing; the host's init reaps it
                found.append(f"{pid} {comm} ppid={rest.split()[1]}")
    return found


def test_an_escape_attempt_leaves_nothing_on_the_host(client, warden, attack_dir, tmp_path):
    rw = tmp_path / "rw"
    rw.mkdir()
    os.chmod(rw, 0o1777)
    h = create(client, attack_dir, {"src_path": str(rw), "dst_path": "/mnt/rw", "mode": "rw"})
    container = client.info(handle=h).container_path.decode()
    first, count = container_range(client, h)
    for privileged in (True, False):
        assert sh(client, h, ESCAPE.format(bin=BIN), privileged).stdout == b"done\n"
    client.spawn(handle=h, script=b"sleep 1000", privileged=True)
    assert host_processes_in(first, count)  # the attempt is alive until the destroy
    client.destroy(handle=h)
    nothing_left(client, warden)
    assert host_processes_in(first, count) == []
    assert container not in open("/proc/self/mountinfo").read()
    assert not any(name.startswith("w-evil") for name in os.listdir("/sys/class/net"))
    # a v1 hierarchy's /sys/fs/cgroup/<ctrl>/evil, or the unified one's /sys/fs/cgroup/evil
    assert not any(Path(h).exists() for h in Path("/sys/fs/cgroup").glob("**/evil"))
