"""Issue 11, attacks from inside a container: a job (container root, `privileged`, or vcap)
tries what an attacker would on the real kernel, and each test asserts the kernel refused and
the host is unchanged. The system calls are made by tests/integration/attacks/attack.c (built
static at test time, bound read-only into the container), which prints the errno it got."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

from warden_framework.client import ServerError

from .attacks import (AS_ROOT_AND_VCAP, BIN, attack, attack_dir, canary, container_range,  # noqa: F401
                      create, host_handle, sh)

REFUSED = ("EPERM", "EACCES", "EROFS")


def scratch(tmp_path: Path, name: str, mode: int) -> Path:
    """A host directory (under /tmp, so a create may bind it) that every uid may write."""
    d = tmp_path / name
    d.mkdir()
    os.chmod(d, mode)
    return d


@pytest.fixture
def host_canary(tmp_path):
    """A 0600 root-owned file in /root holding a random secret; (path, secret)."""
    if os.stat("/root").st_dev != os.stat(tmp_path).st_dev:
        # e.g. a tmpfs /tmp, or the qemu guest (/root on overlayfs over 9p, without file handles)
        pytest.skip("the handle attacks need /root and pytest's tmp dir on one filesystem, "
                    f"as on a host whose / holds both; {tmp_path} is on another")
    secret = canary()
    path = Path("/root") / f"{secrets.token_hex(6)}-canary"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, secret.encode() + b"\n")
    os.close(fd)
    yield path, secret
    path.unlink()


# -- 2. a privileged job against the host's kernel state ----------------------------------


@pytest.mark.parametrize("sysctl, value", [("kernel/core_pattern", "|/mnt/attack/attack"),
                                           ("net/ipv4/ip_forward", None),
                                           ("kernel/hostname", "pwned")])
def test_root_cannot_write_host_sysctls(client, attack_dir, sysctl, value):
    host = Path("/proc/sys") / sysctl
    before = host.read_text()
    value = value or ("0" if before.strip() == "1" else "1")
    h = create(client, attack_dir)
    try:
        # straight at it, then with the read-only /proc/sys mount taken away first
        out = attack(client, h, f"write:/proc/sys/{sysctl}:{value}", "umount:/proc/sys",
                     "remount-rw:/proc/sys", f"write:/proc/sys/{sysctl}:{value}", privileged=True)
        after = host.read_text()
    finally:
        if host.read_text() != before:  # never leave the host broken, even by a failed test
            host.write_text(before)
    assert after == before
    assert out[0].result in REFUSED and out[3].result in REFUSED, out
    assert out[1].result == "EPERM" and out[2].result == "EPERM", out


@pytest.mark.parametrize("source, fstype, data", [
    ("cgroup", "cgroup", "memory"), ("cgroup2", "cgroup2", None), ("tmpfs", "tmpfs", None),
    ("proc", "proc", None), ("sysfs", "sysfs", None)])
def test_root_cannot_mount(client, attack_dir, source, fstype, data):
    h = create(client, attack_dir)
    step = f"mount:{source}:/mnt/m:{fstype}" + (f":{data}" if data else "")
    assert attack(client, h, step, privileged=True)[0].result == "EPERM"
    assert sh(client, h, "grep -c ' /mnt/m ' /proc/self/mountinfo").stdout == b"0\n"


@AS_ROOT_AND_VCAP
@pytest.mark.parametrize("steps", [["remount-rw:/mnt/ro"], ["remount-sb-rw:/mnt/ro"],
                                   ["unshare:user,mnt", "remount-rw:/mnt/ro"],
                                   ["unshare:mnt", "remount-rw:/mnt/ro"], ["umount:/mnt/ro"]],
                         ids=["remount", "remount-sb", "unshare-user-remount", "unshare-remount", "umount"])
def test_read_only_bind_stays_read_only(client, attack_dir, tmp_path, steps, privileged):
    ro = scratch(tmp_path, "ro", 0o777)  # only the mount stands between the job and this dir
    (ro / "f").write_text("data")
    h = create(client, attack_dir, {"src_path": str(ro), "dst_path": "/mnt/ro", "mode": "ro"})
    out = attack(client, h, *steps, "write:/mnt/ro/pwned", "write:/mnt/ro/f", privileged=privileged)
    assert all(o.result == "EPERM" for o in out[:len(steps)]), out
    assert out[-2].result == "EROFS" and out[-1].result == "EROFS", out
    assert sorted(os.listdir(ro)) == ["f"] and (ro / "f").read_text() == "data"


@AS_ROOT_AND_VCAP
def test_open_by_handle_at_cannot_reach_a_host_file(client, attack_dir, tmp_path, host_canary, privileged):
    """The "shocker" escape: forge the handle of a host file and open it relative to any fd
    on the same filesystem (here a bind of a /tmp dir, on the host's root filesystem)."""
    path, secret = host_canary
    kind, handle = host_handle(attack_dir, path)
    d = scratch(tmp_path, "d", 0o755)
    h = create(client, attack_dir, {"src_path": str(d), "dst_path": "/mnt/d", "mode": "ro"})
    out = attack(client, h, f"open-handle:/mnt/d:{kind}:{handle}", f"open-handle:/mnt/attack:{kind}:{handle}",
                 "open-handle:/:1:0200000000000000", privileged=privileged)
    assert [o.result for o in out] == ["EPERM"] * 3, out
    assert secret not in repr(out)


@pytest.mark.parametrize("mask", ["/proc/timer_list", "/proc/keys", "/proc/sys"])
def test_root_cannot_unmount_a_mask(client, attack_dir, mask):
    h = create(client, attack_dir)
    out = attack(client, h, f"umount:{mask}", "read:/proc/timer_list",
                 "write:/proc/sys/kernel/core_pattern:x", privileged=True)
    assert out[0].result == "EPERM", out
    assert "Timer List" not in out[1].detail and out[2].result in REFUSED, out


# -- 3. no privileges to gain ---------------------------------------------------------------


@AS_ROOT_AND_VCAP
@pytest.mark.parametrize("name", ["mount", "umount2", "pivot_root", "unshare", "setns", "ptrace",
                                  "kexec_load", "open_by_handle_at", "init_module", "finit_module",
                                  "delete_module", "bpf", "perf_event_open", "keyctl", "add_key",
                                  "request_key", "userfaultfd", "swapon", "reboot", "acct"])
def test_denied_system_calls(client, attack_dir, name, privileged):
    h = create(client, attack_dir)
    assert attack(client, h, f"syscall:{name}", privileged=privileged)[0].result == "EPERM"


@AS_ROOT_AND_VCAP
@pytest.mark.parametrize("flags", ["user", "mnt", "pid", "net", "cgroup", "user,mnt"])
def test_no_new_namespaces(client, attack_dir, flags, privileged):
    h = create(client, attack_dir)
    out = attack(client, h, f"clone:{flags}", f"unshare:{flags}", privileged=privileged)
    assert [o.result for o in out] == ["EPERM", "EPERM"], out


def test_vcap_job_holds_no_capabilities_and_no_new_privileges(client, attack_dir):
    h = create(client, attack_dir)
    status = sh(client, h, "cat /proc/self/status").stdout.decode()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields[cap])


def test_root_job_holds_only_dockers_default_capabilities(client, attack_dir):
    h = create(client, attack_dir)
    status = sh(client, h, "cat /proc/self/status", privileged=True).stdout.decode()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    sys_admin, sys_module, sys_ptrace, sys_rawio, net_admin = 21, 16, 19, 17, 12
    for cap in ("CapEff", "CapBnd"):
        held = int(fields[cap], 16)
        assert not held & (1 << sys_admin | 1 << sys_module | 1 << sys_ptrace | 1 << sys_rawio
                           | 1 << net_admin), (cap, fields[cap])
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"


@pytest.mark.parametrize("where", ["/bin", "/mnt/rw"], ids=["rootfs", "rw-bind"])
def test_set_uid_binary_planted_by_container_root_gives_vcap_nothing(client, attack_dir, tmp_path, where):
    rw = scratch(tmp_path, "rw", 0o777)
    h = create(client, attack_dir, {"src_path": str(rw), "dst_path": "/mnt/rw", "mode": "rw"})
    vcap = sh(client, h, "id -u").stdout.decode().strip()
    sh(client, h, f"cp {BIN} {where}/suid; cp /bin/bash {where}/suid-sh; "
                  f"chmod 4755 {where}/suid {where}/suid-sh", privileged=True)
    assert attack_euid(client, h, f"{where}/suid") == f"{vcap} {vcap}"
    resp = sh(client, h, f"{where}/suid-sh -p -c 'echo $EUID'")
    assert resp.stdout.decode().strip() == vcap, resp


def attack_euid(client, handle: str, binary: str) -> str:
    resp = sh(client, handle, f"{binary} euid")
    assert resp.exit_status == 0, resp
    return resp.stdout.decode().split(" ", 2)[2].strip()


# -- 4. container root is not host root -----------------------------------------------------


def test_container_root_is_an_unprivileged_host_uid(client, warden, attack_dir, tmp_path):
    rw = scratch(tmp_path, "rw", 0o1777)
    secret = canary()
    (rw / "canary").write_text(secret)
    os.chmod(rw / "canary", 0o600)
    h = create(client, attack_dir, {"src_path": str(rw), "dst_path": "/mnt/rw", "mode": "rw"})
    resp = sh(client, h, "touch /mnt/rw/made; mkdir /mnt/rw/dir; chown 0:0 /mnt/rw/made; "
                         "cat /mnt/rw/canary; chmod 666 /mnt/rw/canary; chown 0 /mnt/rw/canary; "
                         "rm -f /mnt/rw/canary", privileged=True)
    assert secret.encode() not in resp.stdout
    start = warden.settings.user.namespace_start_uid
    for made in ("made", "dir"):
        st = os.stat(rw / made)
        assert st.st_uid >= start and st.st_gid >= start, (made, st.st_uid, st.st_gid)
    st = os.stat(rw / "canary")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    first, count = container_range(client, h)
    assert first >= start and first != 0 and count <= 65536
    assert os.stat(rw / "made").st_uid == first


def test_two_containers_never_share_host_ids(client, attack_dir):
    a, b = create(client, attack_dir), create(client, attack_dir)
    (fa, na), (fb, nb) = container_range(client, a), container_range(client, b)
    assert fa + na <= fb or fb + nb <= fa


# -- 8. devices -----------------------------------------------------------------------------


def host_root_disk() -> tuple[int, int]:
    dev = os.stat("/").st_dev
    return os.major(dev), os.minor(dev)


@pytest.mark.parametrize("node", ["console", "root-disk", "fuse", "mem", "kmsg"])
@pytest.mark.parametrize("where", ["/tmp", "/dev"])
def test_root_cannot_make_or_open_host_devices(client, attack_dir, node, where):
    kind, major, minor = {"console": ("c", 5, 1), "root-disk": ("b", *host_root_disk()),
                          "fuse": ("c", 10, 229), "mem": ("c", 1, 1), "kmsg": ("c", 1, 11)}[node]
    h = create(client, attack_dir)
    out = attack(client, h, f"mknod:{where}/n:{kind}:{major}:{minor}", f"open:{where}/n", privileged=True)
    assert out[0].result in ("EPERM", "EACCES"), out
    assert out[1].result != "OK", out


def test_dev_holds_only_the_expected_nodes(client, attack_dir):
    h = create(client, attack_dir)
    resp = sh(client, h, "ls -A /dev; stat -c '%t:%T' /dev/console 2>/dev/null", privileged=True)
    lines = resp.stdout.decode().split()
    names = {n for n in lines if ":" not in n}
    assert names <= {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
                     "fd", "stdin", "stdout", "stderr", "console"}, names
    assert "5:1" not in lines and "fuse" not in names


# -- 9. a host canary, by every route -------------------------------------------------------

ROUTES = r"""
for t in {targets}; do
  cat "$t" "/../../../../..$t" "/proc/1/root$t" "/proc/self/root$t" "/proc/1/cwd$t"
  for p in /proc/[0-9]*; do cat "$p/root$t" "$p/cwd$t" "$p/cwd/../../../../..$t"; done
  for fd in /proc/1/fd/*; do cat "$fd$t" "$fd/../../../../..$t" "$fd/root/$(basename $t)"; done
done
ls -la /proc/1/fd /proc/1/root/ /proc/1/cwd/
for fd in /proc/1/fd/*; do timeout 1 cat "$fd" </dev/null; done
timeout 2 cat /proc/1/environ /proc/1/mem
ls /sys 2>/dev/null && cat /sys/block/*/dev 2>/dev/null
nsenter -t 1 -m -u -n -p cat {targets}
"""


@AS_ROOT_AND_VCAP
def test_host_canary_is_unreachable_by_every_route(client, attack_dir, tmp_path, host_canary, privileged):
    path, secret = host_canary
    # another container's file, seen from the host in its depot directory
    other = create(client, attack_dir)
    other_secret = canary()
    sh(client, other, f"echo {other_secret} > /root/canary; chmod 600 /root/canary; cp /root/canary /tmp/",
       privileged=True)
    other_dir = Path(client.info(handle=other).container_path.decode())
    other_files = sorted(str(p) for p in other_dir.glob("*/*/canary"))
    assert other_files, "the other container's canary is not in its depot directory"
    on_disk = [path, *(f for f in other_files if "/upper/" in f)]  # handles of files on ext4
    # a bind through a /tmp symlink to the canary's directory is refused at create
    link = tmp_path / "to-root"
    link.symlink_to("/root")
    with pytest.raises(ServerError, match="is not under an allowed path"):
        client.create(bind_mounts=[{"src_path": str(link), "dst_path": "/mnt/root", "mode": "ro"}])

    rw = scratch(tmp_path, "rw", 0o1777)  # on the host's root filesystem, as /root is
    h = create(client, attack_dir, {"src_path": str(rw), "dst_path": "/mnt/rw", "mode": "rw"})
    targets = " ".join([str(path), *other_files])
    routes = sh(client, h, ROUTES.format(targets=targets), privileged)
    major, minor = host_root_disk()
    steps = [f"open-handle:/mnt/rw:{':'.join(host_handle(attack_dir, f))}" for f in on_disk]
    steps += [f"chroot-escape:{path}", "ptrace:1", f"mknod:/dev/hd:b:{major}:{minor}",
              "mount:/dev/hd:/mnt/hd:ext4", f"read:/mnt/hd{path}", "bind:/proc/1/root:/mnt/init-root",
              f"read:/mnt/init-root{path}", "setns:/proc/1/ns/mnt", f"read:{path}"]
    out = attack(client, h, *steps, privileged=privileged)

    seen = routes.stdout + routes.stderr + repr(out).encode()
    assert secret.encode() not in seen and other_secret.encode() not in seen
    handles = len(on_disk)
    assert [o.result for o in out[:handles]] == ["EPERM"] * handles, out
    assert all(o.result != "OK" for o in out[handles:]), out
