"""Containment of wshd's jobs on the real kernel, written as attacks: what a job (container
root or an ordinary uid) tries in order to leave the container, and what it must get instead.
Most cases run twice: with a user namespace (--id-map, as the server runs wshd when
`user.namespaces` is on) and without. The test roots are owned by host root, so inside a user
namespace they appear owned by nobody; the commands are picked so that does not matter."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from warden_wshd_exec.wshd_client import WshdError

ID_BASE = 2_100_000_000  # far above any uid the host or other tests use
ID_COUNT = 65536
ID_MAP = (ID_BASE, ID_COUNT)
MODES = [pytest.param(None, id="no-userns"), pytest.param(ID_MAP, id="userns")]
VCAP = 10001
CAP_SYS_ADMIN = 21

# Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
DOCKER_CAPS = "00000000a80425fb"
NO_CAPS = "0000000000000000"


def status_fields(text: str, *names: str) -> list[str]:
    """The values of /proc/PID/status fields, in the order asked."""
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    return [fields[name].strip() for name in names]


def ro_bind(containers) -> tuple[Path, tuple[str, str, bool]]:
    src = containers.work / "ro-src"
    src.mkdir()
    (src / "file").write_text("from host\n")
    return src, (str(src), "/mnt/ro", True)


# ------------------------------------------------------------------------- identity

def test_a_user_namespace_maps_the_range_and_root_is_root_of_it(containers) -> None:
    container = containers.start(id_map=ID_MAP)
    script = "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map"
    result = container.run(["/bin/sh", "-c", script])
    assert result.stdout.split() == ["0", "0", *["0", str(ID_BASE), str(ID_COUNT)] * 2]
    vcap = container.run(["id", "-u"], uid=VCAP, gid=VCAP)
    assert vcap.stdout == f"{VCAP}\n"
    # Seen from the host, the init and its jobs hold ids of the range, never host root.
    host_status = Path(f"/proc/{container.pid}/status").read_text()
    assert status_fields(host_status, "Uid")[0].split() == [str(ID_BASE)] * 4
    assert Path(f"/proc/{container.pid}/setgroups").read_text() == "allow\n"


def test_without_an_id_map_there_is_no_user_namespace(container) -> None:
    assert os.readlink(f"/proc/{container.pid}/ns/user") == os.readlink("/proc/self/ns/user")
    for ns in ("mnt", "pid", "net", "uts", "ipc", "cgroup"):
        assert os.readlink(f"/proc/{container.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")


@pytest.mark.parametrize(
    "argument",
    ["0:65536", "1:0", "5", "x:1", "1:x", "-1:5", "+1:5", "1: 5", "4294967295:1",
     "4294901760:65536"],
)
def test_a_bad_id_map_is_refused_before_anything_starts(wshd_binary, tmp_path, argument) -> None:
    base, _, count = argument.partition(":")
    run_dir, root = tmp_path / "run", tmp_path / "root"
    run_dir.mkdir()
    root.mkdir()
    args = [str(wshd_binary), "--run", str(run_dir), "--root", str(root), "--hostname", "box",
            "--id-map", argument]
    result = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert f"wshd: --id-map {argument}: want HOSTBASE:COUNT" in result.stderr
    assert list(run_dir.iterdir()) == []


# --------------------------------------------------------------------- capabilities

@pytest.mark.parametrize("id_map", MODES)
def test_root_keeps_dockers_capabilities_and_other_uids_none(containers, id_map) -> None:
    container = containers.start(id_map=id_map)
    fields = ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp")
    root = status_fields(container.run(["cat", "/proc/self/status"]).stdout, *fields)
    assert root == [DOCKER_CAPS] * 3 + [NO_CAPS] * 2 + ["1", "2"]
    vcap = container.run(["cat", "/proc/self/status"], uid=VCAP, gid=VCAP)
    assert status_fields(vcap.stdout, *fields) == [NO_CAPS] * 5 + ["1", "2"]
    # The filter is the init's, inherited: the init itself runs under it too.
    init = Path(f"/proc/{container.pid}/status").read_text()
    assert status_fields(init, "Seccomp") == ["2"]


# ------------------------------------------------------------------ mounts and proc

@pytest.mark.parametrize("id_map", MODES)
def test_root_cannot_mount_unmount_or_make_namespaces(containers, id_map) -> None:
    src, bind = ro_bind(containers)
    container = containers.start(binds=[bind], id_map=id_map)
    attempts = {
        "remount": "mount -o remount,rw /mnt/ro",
        "tmpfs": "mount -t tmpfs none /mnt",
        "umount": "umount /mnt/ro",
        "lazy-umount": "umount -l /dev",
        "unshare-user": "unshare -U -m -r true",
        "unshare-mount": "unshare -m true",
        "nsenter": "nsenter -t 1 -m true",
        "chroot-escape": "chroot /proc/1/root true",
    }
    for name, command in attempts.items():
        result = container.run(["/bin/sh", "-c", command])
        assert result.info.exit_code != 0, f"{name}: {command} succeeded"
    after = container.run(["/bin/sh", "-c", "echo x > /mnt/ro/new; cat /mnt/ro/file"])
    assert after.stdout == "from host\n" and "Read-only file system" in after.stderr
    assert list(src.iterdir()) == [src / "file"]


@pytest.mark.parametrize("id_map", MODES)
def test_proc_is_masked_and_its_kernel_knobs_read_only(containers, id_map) -> None:
    container = containers.start(id_map=id_map)
    write = container.run(["/bin/sh", "-c", "echo evil > /proc/sys/kernel/hostname"])
    assert write.info.exit_code != 0 and "Read-only file system" in write.stderr
    assert container.run(["hostname"]).stdout == "box\n"
    kcore = container.run(["/bin/sh", "-c", "head -c 16 /proc/kcore | wc -c"])
    assert kcore.stdout == "0\n"  # absent, or /dev/null over it: no kernel memory either way
    for name in ("kcore", "keys", "timer_list", "sched_debug", "sysrq-trigger", "latency_stats"):
        if Path("/proc", name).exists():
            kind = container.run(["stat", "-c", "%F %t:%T", f"/proc/{name}"]).stdout
            assert kind == "character special file 1:3\n", name
    mounts = container.run(["cat", "/proc/mounts"]).stdout.splitlines()
    read_only = {line.split()[1] for line in mounts if line.split()[3].startswith("ro")}
    assert {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"} <= read_only
    if Path("/proc/acpi").exists():
        assert container.run(["ls", "-A", "/proc/acpi"]).stdout == ""


@pytest.mark.parametrize("id_map", MODES)
def test_sysrq_trigger_does_not_reach_the_kernel(containers, id_map) -> None:
    if not Path("/proc/sysrq-trigger").exists():
        pytest.skip("this kernel has no /proc/sysrq-trigger")
    container = containers.start(id_map=id_map)
    result = container.run(["/bin/sh", "-c", "echo h > /proc/sysrq-trigger; stat -c %t:%T "
                                             "/proc/sysrq-trigger"])
    assert result.stdout.endswith("1:3\n")


def test_dev_holds_exactly_the_expected_entries(containers) -> None:
    container = containers.start(id_map=ID_MAP)
    names = container.run(["ls", "-A", "/dev"]).stdout.split()
    assert sorted(names) == sorted(["null", "zero", "full", "random", "urandom", "tty", "fd",
                                    "stdin", "stdout", "stderr", "ptmx", "pts", "shm"])
    devices = container.run(["/bin/sh", "-c", "head -c 3 /dev/zero | wc -c; echo x >/dev/null "
                                              "&& echo ok; echo x > /dev/full"])
    assert devices.stdout == "3\nok\n" and "No space left" in devices.stderr
    # owned by the container's root, as a /dev of its own should be (not by nobody)
    owners = container.run(["stat", "-c", "%u:%g %n", "/dev", "/dev/null", "/dev/shm",
                            "/dev/stdin"]).stdout.split("\n")
    assert [line.split()[0] for line in owners if line] == ["0:0"] * 4, owners


@pytest.mark.parametrize("id_map", MODES)
def test_container_root_cannot_read_the_inits_proc_entries(containers, id_map) -> None:
    container = containers.start(id_map=id_map)
    for path in ("/proc/1/environ", "/proc/1/mem", "/proc/1/fd/0", "/proc/1/cmdline/../maps"):
        result = container.run(["head", "-c", "1", path])
        assert result.info.exit_code != 0, f"{path} was readable"
    for path in ("/proc/1/root/", "/proc/1/cwd/", "/proc/1/fd/0", "/proc/1/fd/3"):
        assert container.run(["readlink", path]).info.exit_code != 0, f"{path} was read"
    # Without a user namespace container root owns the (non-dumpable) init's fd directory and
    # may list the numbers, though not follow them; in one, it is not even the owner.
    listing = container.run(["ls", "/proc/1/fd"])
    assert (listing.info.exit_code != 0) == (id_map is not None)


def test_mounts_copied_into_a_user_namespace_are_locked(containers) -> None:
    """Even with every capability of the container's user namespace, and no seccomp filter
    (entered from the host with nsenter), the ro bind cannot be made writable or removed."""
    if shutil.which("nsenter") is None:
        pytest.skip("needs nsenter (util-linux)")
    src, bind = ro_bind(containers)
    container = containers.start(binds=[bind], id_map=ID_MAP)
    enter = ["nsenter", "-t", str(container.pid), "-U", "-m", "-p", "--"]
    attempts = {
        "remount": ["/bin/mount", "-o", "remount,bind,rw", "/mnt/ro"],
        "umount": ["/bin/umount", "/mnt/ro"],
        "umount-dev": ["/bin/umount", "-l", "/dev"],
    }
    for name, argv in attempts.items():
        result = subprocess.run(enter + argv, capture_output=True, text=True, timeout=10)
        assert result.returncode != 0, f"{name} succeeded: {result.stderr}"
    # The attacker here: CAP_SYS_ADMIN in the container's user namespace, no seccomp filter.
    caps = subprocess.run(enter + ["/bin/cat", "/proc/self/status"], capture_output=True,
                          text=True, timeout=10, check=True)
    cap_eff, seccomp = status_fields(caps.stdout, "CapEff", "Seccomp")
    assert int(cap_eff, 16) & (1 << CAP_SYS_ADMIN) and seccomp == "0"
    check = subprocess.run(enter + ["/bin/sh", "-c", "echo x > /mnt/ro/new"],
                           capture_output=True, text=True, timeout=10)
    assert "Read-only file system" in check.stderr
    assert list(src.iterdir()) == [src / "file"]


# --------------------------------------------------------------------------- paths

@pytest.mark.parametrize("id_map", MODES)
def test_symlinked_bind_targets_stay_inside_the_root(containers, id_map) -> None:
    src = containers.work / "bind-src"
    src.mkdir()
    (src / "file").write_text("bound\n")
    single = containers.work / "single-file"
    single.write_text("one file\n")
    outside = [containers.work / f"host-dir-{n}" for n in range(3)]
    for path in outside:
        path.mkdir()

    def plant(root: Path) -> None:
        (root / "abs").symlink_to(outside[0])
        (root / "rel").symlink_to("../" * 40 + str(outside[1]).lstrip("/"))
        (root / "ffile").symlink_to(outside[2])

    binds = [(str(src), "/abs/x", True), (str(src), "/rel/y", False),
             (str(single), "/ffile/z", True)]
    container = containers.start(binds=binds, id_map=id_map, prepare=plant)
    for path in outside:
        assert list(path.iterdir()) == [], f"{path} on the host was written to"
    # Resolved as if the root were /: the targets were made under the root, and bound there.
    for index, name in enumerate(("x", "y", "z")):
        assert (container.root_dir / str(outside[index]).lstrip("/") / name).exists()
    result = container.run(["cat", "/abs/x/file", "/rel/y/file", "/ffile/z"])
    assert result.stdout == "bound\nbound\none file\n"


def test_dangling_symlinks_are_followed_inside_the_root_and_loops_refused(containers) -> None:
    outside = [containers.work / "never-made-0", containers.work / "never-made-1"]
    src = containers.work / "bind-src"
    src.mkdir()
    src.chmod(0o777)  # owned by host root: nobody's, inside the user namespace
    single = containers.work / "single-file"
    single.write_text("one file\n")

    def plant(root: Path) -> None:
        (root / "dangling").symlink_to(outside[0])
        (root / "bin" / "trap").symlink_to(f"../../../../{outside[1]}/file")
        (root / "loop-a").symlink_to("loop-b")
        (root / "loop-b").symlink_to("/loop-a")

    binds = [(str(src), "/dangling", False), (str(single), "/bin/trap", True)]
    container = containers.start(binds=binds, id_map=ID_MAP, prepare=plant)
    assert not any(path.exists() for path in outside)
    inside = [container.root_dir / str(path).lstrip("/") for path in outside]
    assert inside[0].is_dir() and (inside[1] / "file").read_text() == ""
    assert container.run(["cat", "/bin/trap"]).stdout == "one file\n"
    assert container.run(["touch", "/dangling/made"]).info.exit_code == 0
    assert (src / "made").exists()
    with pytest.raises(WshdError, match=(r"^wshd: bind onto /loop-a/x: open /loop-a in the root: "
                                         r"Too many levels of symbolic links$")):
        containers.start(binds=[(str(single), "/loop-a/x", True)], prepare=plant)


def test_a_bind_source_swapped_for_a_symlink_after_the_check_is_refused(containers) -> None:
    """The server checks a source's resolved path against its allowed prefixes, then wshd
    mounts it: a host user who owns a directory on that path and swaps it for a symlink to /
    in between must not get /etc bound into the container."""
    owned = containers.work / "user-dir"
    (owned / "etc").mkdir(parents=True)
    checked = str(owned / "etc")  # what the server resolved and allowed
    shutil.rmtree(owned)
    owned.symlink_to("/")  # the swap: <owned>/etc is now the host's /etc
    with pytest.raises(WshdError, match=(f"^wshd: open bind source {checked}: "
                                         "Too many levels of symbolic links$")):
        containers.launch(binds=[(checked, "/mnt/etc", False)], id_map=ID_MAP)


@pytest.mark.parametrize("name", ["proc", "dev"])
def test_a_symlinked_proc_or_dev_is_refused(containers, name) -> None:
    # The init mounts on "proc" and binds "dev/null" relative to the root before it pivots:
    # a symlink there would be followed on the host's side of the root.
    outside = containers.work / f"host-{name}"
    outside.mkdir()
    with pytest.raises(WshdError, match=(f"^wshd: /{name} in the root must be a directory, "
                                         "not a symlink: Too many levels of symbolic links$")):
        containers.launch(id_map=ID_MAP, prepare=lambda root: (root / name).symlink_to(outside))
    assert list(outside.iterdir()) == []


# ----------------------------------------------------------------------------- seccomp

ALLOWED_PERSONAS = ["0", "0x8", "0x20000", "0x20008", "0xffffffff"]
REFUSED_PERSONAS = ["0x1", "0x10000", "0x20009", "0x400000", "0xfffffffe", "0x100000000"]


@pytest.mark.parametrize("id_map", MODES)
def test_seccomp_refuses_personas_and_namespace_clones(probed_containers, id_map) -> None:
    container = probed_containers.start(id_map=id_map)
    personas = container.run(["syscall_probe", "personality", *ALLOWED_PERSONAS,
                              *REFUSED_PERSONAS]).stdout.splitlines()
    assert personas == [f"{a} ok" for a in ALLOWED_PERSONAS] + [f"{r} errno {errno.EPERM}"
                                                              for r in REFUSED_PERSONAS]
    for flag in ("0x10000000", "0x20000", "0x20000000", "0x40000000", "0x02000000", "0x80"):
        clone = container.run(["syscall_probe", "clone", flag], uid=VCAP, gid=VCAP)
        assert clone.stdout == f"{flag} errno {errno.EPERM}\n", flag
    assert container.run(["syscall_probe", "clone", "0"]).stdout == "0 ok\n"
    assert container.run(["syscall_probe", "clone3"]).stdout == f"clone3 errno {errno.ENOSYS}\n"


@pytest.mark.parametrize("uid", [0, VCAP])
def test_seccomp_refuses_dockers_blocked_calls(probed_containers, uid) -> None:
    container = probed_containers.start(id_map=ID_MAP)
    lines = container.run(["syscall_probe", "blocked"], uid=uid, gid=uid).stdout.splitlines()
    assert len(lines) == 20 and all(line.endswith(f" errno {errno.EPERM}") for line in lines), lines


@pytest.mark.parametrize("abi", ["i386", "x32"])
def test_seccomp_kills_a_job_that_uses_a_foreign_abi(probed_containers, abi) -> None:
    container = probed_containers.start(id_map=ID_MAP)
    result = container.run(["syscall_probe", "abi", abi])
    assert (result.info.exit_code, result.info.signal) == (None, signal.SIGSYS)
    assert "survived" not in result.stdout


# ----------------------------------------------------------------------------- limits

def test_rlimits_apply_inside_a_user_namespace(containers) -> None:
    container = containers.start(id_map=ID_MAP)
    result = container.run(["/bin/sh", "-c", "ulimit -n; ulimit -Hn"],
                           rlimits={7: (321, 654)})
    assert result.stdout == "321\n654\n"
