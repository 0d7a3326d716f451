"""The mount seed on the real kernel: containers built in it hold none of the host's mounts,
the host never sees it, and neither the init nor its jobs keep a way back to the host's
namespace or directories. Needs root."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

from warden_wshd_exec.wshd_client import WshdError, make_mount_seed

from .conftest import Containers, Subreaper
from .test_wshd_containment import ID_MAP, MODES, ro_bind

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces and mounts"),
]

CLONE_NEWNS = 0x00020000


def mount_points(pid: int | str = "self") -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line.split()[4] for line in f]


def points_inside(seed: int) -> list[str]:
    """The mount points of the namespace `seed` names, read by a child that enters it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # only the calls below: the child of a threaded process
        try:
            os.close(read_end)
            if ctypes.CDLL(None, use_errno=True).setns(seed, CLONE_NEWNS) == 0:
                os.write(write_end, "\n".join(mount_points()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    return text.split("\n") if text else []


def test_the_seed_holds_a_tmpfs_and_proc_and_the_host_never_sees_it(wshd_binary: Path,
                                                                       tmp_path: Path) -> None:
    before = mount_points()
    seed = make_mount_seed(wshd_binary, tmp_path)
    try:
        assert mount_points() == before
        assert points_inside(seed) == ["/", "/proc"]
        assert os.readlink(f"/proc/self/fd/{seed}") != os.readlink("/proc/self/ns/mnt")
    finally:
        os.close(seed)


@pytest.mark.parametrize("seeded", [True, False], ids=["seed", "no-seed"])
@pytest.mark.parametrize("id_map", MODES)
def test_a_container_holds_its_own_mounts_and_no_descriptor_of_the_host(
        wshd_binary: Path, busybox_root: Path, seeded: bool, id_map) -> None:
    """The init's mounts are its root, /dev, proc and its masks, and its binds: none of the
    host's (the old root was detached). Its descriptors name no mount namespace and no
    directory of the host (the run dir and the seed are closed before the clone). A bind
    read-only from the host stays so in both ways of building."""
    with Subreaper():
        made = Containers(wshd_binary, busybox_root, seeded=seeded)
        try:
            src, bind = ro_bind(made)
            box = made.start(binds=[bind], id_map=id_map)
            points = mount_points(box.pid)
            assert {"/", "/dev", "/proc", "/mnt/ro"} <= set(points)
            allowed = {"/", "/dev", "/dev/pts", "/dev/shm", "/proc", "/mnt/ro"}
            strays = [p for p in points if p not in allowed and not p.startswith("/proc/")]
            assert strays == []
            held = [os.readlink(f"/proc/{box.pid}/fd/{fd}")
                    for fd in os.listdir(f"/proc/{box.pid}/fd")]
            assert not [link for link in held if link.startswith("mnt:")]
            assert str(box.run_dir) not in held and "/" not in held
            result = box.run(["/bin/sh", "-c", "cat /mnt/ro/file; echo x > /mnt/ro/new"])
            assert result.stdout == "from host\n"
            assert result.info.exit_code != 0 and not (src / "new").exists()
        finally:
            made.teardown()


def test_a_job_cannot_reach_the_seed_or_the_host_through_its_init(containers) -> None:
    """Container root looks for a way out in what its init holds: the init's descriptors
    are refused to it, and the init's mounts are the container's own (no seed, no host)."""
    box = containers.start(id_map=ID_MAP)
    result = box.run(["/bin/sh", "-c", "ls -l /proc/1/fd/ 2>&1; cat /proc/1/mountinfo"])
    listing, _, mountinfo = result.stdout.partition("total 0\n")
    assert "Permission denied" in listing
    points = [line.split()[4] for line in mountinfo.splitlines()]
    assert "/" in points and "/proc" in points
    assert [p for p in points if p not in ("/", "/dev", "/dev/pts", "/dev/shm")
            and not p.startswith("/proc")] == []


@pytest.mark.parametrize("argv, status, message", [
    (["--mount-seed-fd", "2"], 2, "--mount-seed-fd 2: not a descriptor number above 2"),
    (["--mount-seed-fd", "x"], 2, "--mount-seed-fd x: not a descriptor number above 2"),
    (["--mount-seed-fd", "999"], 1, "--mount-seed-fd 999: Bad file descriptor"),
])
def test_a_bad_mount_seed_descriptor_is_refused_by_name(wshd_binary: Path, tmp_path: Path,
                                                        argv, status, message) -> None:
    done = subprocess.run([str(wshd_binary), "--run", str(tmp_path), "--root", str(tmp_path),
                           "--hostname", "box", *argv], capture_output=True, text=True,
                          timeout=10)
    assert done.returncode == status
    assert message in done.stderr


def test_a_seed_that_cannot_be_made_says_why(wshd_binary: Path, tmp_path: Path) -> None:
    with pytest.raises(WshdError, match=f"mount tmpfs on {tmp_path}/missing: No such file"):
        make_mount_seed(wshd_binary, tmp_path / "missing")
