"""Runs inside the qemu guest only (tests/guest/test_guest_runner.py boots it): proves the guest
is the pure cgroup v2 kernel the runner promises. The name does not match `test_*.py`, so the
host's pytest never collects it; the guard below also skips it if named on the host.
The last test fails on purpose, to show the runner reports failures and their count."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from warden_framework.drivers import BASES, installed_names, load_driver_class
from warden_framework.idmap import IdMap
from warden_rootfs_common.idmapped import check_support, mount_idmapped
from warden_rootfs_common.kernel import unmount

pytestmark = pytest.mark.skipif(os.environ.get("WARDEN_GUEST") != "1",
                                reason="runs inside the qemu guest only (WARDEN_GUEST=1)")

CHECKOUT = Path(__file__).resolve().parents[2]


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount, from mountinfo."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        found.append((left.split()[4], right.split()[0]))
    return found


def _fs_type(path: Path) -> str:
    """The type of the filesystem holding `path`: its mount point is the longest prefix."""
    best = max((point for point, _ in _mounts() if path.is_relative_to(point)), key=len)
    return [fstype for point, fstype in _mounts() if point == best][-1]


def test_sys_fs_cgroup_is_the_cgroup2_root_and_no_v1_hierarchy_is_mounted():
    assert ("/sys/fs/cgroup", "cgroup2") in _mounts()
    assert [point for point, fstype in _mounts() if fstype == "cgroup"] == []
    rows = [line.split() for line in Path("/proc/cgroups").read_text().splitlines()[1:]]
    assert rows and {row[0]: row[1] for row in rows if row[1] != "0"} == {}


def test_the_v2_root_offers_memory_cpu_pids_and_io():
    offered = Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    assert {"memory", "cpu", "pids", "io"} <= set(offered)


def test_tmp_and_the_default_rootfs_take_idmapped_mounts_on_ext4(tmp_path):
    rootfs = CHECKOUT / "build" / "rootfs"
    assert _fs_type(tmp_path) == "ext4" and _fs_type(rootfs) == "ext4"
    check_support(rootfs)
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    (source / "owned-by-root").write_text("x")
    id_map = IdMap(host_base=(1 + secrets.randbelow(1000)) * 65536, size=65536)
    mount_idmapped(source, target, id_map)
    try:
        shown = (target / "owned-by-root").stat()
        assert (shown.st_uid, shown.st_gid) == (id_map.host_base, id_map.host_base)
    finally:
        unmount(target)


def test_every_installed_driver_loads_and_is_of_its_subsystem():
    loaded = {(subsystem, name): load_driver_class(subsystem, name)
              for subsystem in BASES for name in installed_names(subsystem)}
    assert ("limits", "cgroup_v1") in loaded and ("rootfs", "overlayfs") in loaded
    assert all(issubclass(cls, BASES[subsystem]) for (subsystem, _), cls in loaded.items())


def test_deliberate_failure_a_v1_memory_hierarchy_is_mounted():
    """Fails in the guest by design (no v1 hierarchy exists there): the host test checks that
    the runner reports exactly this one failure."""
    assert "cgroup" in {fstype for point, fstype in _mounts() if point.endswith("memory")}
