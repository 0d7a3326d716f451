"""Fixtures: recording fakes of `warden_quota_disk.kernel` for unit tests (one imitating vfs
user quotas, one imitating btrfs-progs), and real-kernel helpers for the btrfs integration
tests (a driver on a throw-away image, removed even when a test fails)."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from warden_framework.config import settings_from_dict
from warden_framework.container import Container
from warden_quota_disk import kernel

V2_FORMAT = 4  # QFMT_VFS_V1


def mountinfo_line(mount_id: int, mount_point: str, fstype: str, source: str, options: str) -> str:
    return f"{mount_id} 1 8:{mount_id} / {mount_point} rw,relatime - {fstype} {source} {options}"


class FakeKernel:
    """Common part: records every argv given to kernel.run; `fail` maps an argv prefix (a
    tuple) to the stderr of a failure to inject."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commands: list[list[str]] = []
        self.fail: dict[tuple[str, ...], str] = {}
        self.mounts: list[str] = [mountinfo_line(1, "/", "ext4", "/dev/vda", "rw")]
        monkeypatch.setattr(kernel, "run", self.run)
        monkeypatch.setattr(kernel, "read_mountinfo", lambda: "\n".join(self.mounts) + "\n")

    def run(self, argv: list[str]) -> str:
        self.commands.append(list(argv))
        for prefix, stderr in self.fail.items():
            if tuple(argv[:len(prefix)]) == prefix:
                raise kernel.CommandFailed(list(argv), 1, stderr)
        return self.execute(argv)

    def execute(self, argv: list[str]) -> str:
        raise NotImplementedError(argv)

    def add_mount(self, mount_point: str, fstype: str, source: str, options: str = "rw") -> None:
        self.mounts.append(mountinfo_line(100 + len(self.mounts), mount_point, fstype, source, options))

    def commands_named(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.commands if tuple(c[:len(prefix)]) == prefix]


@dataclass
class UserQuota:
    block_soft: int = 0
    block_hard: int = 0
    inode_soft: int = 0
    inode_hard: int = 0
    space_used: int = 0
    inodes_used: int = 0


class FakeQuotaKernel(FakeKernel):
    """vfs user quotas: setquota/quotaon change `quotas`/`quotas_on`; quotactl reads them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, mount_point: str) -> None:
        super().__init__(monkeypatch)
        self.mount_point = mount_point
        self.mounts.append(mountinfo_line(2, mount_point, "ext4", "/dev/loop7",
                                          "rw,usrquota"))
        self.quotas: dict[int, UserQuota] = {}
        self.quotas_on = True
        self.symbols = {"v2_read_file_info"}
        self.modules: set[str] = set()
        monkeypatch.setattr(kernel, "quota_format", self.quota_format)
        monkeypatch.setattr(kernel, "get_user_quota", self.get_user_quota)
        monkeypatch.setattr(kernel, "kernel_has_symbol", lambda names: bool(self.symbols & set(names)))
        monkeypatch.setattr(kernel, "module_available", lambda name: name in self.modules)
        monkeypatch.setattr(kernel, "kernel_release", lambda: "6.99-test")

    def quota(self, uid: int) -> UserQuota:
        return self.quotas.setdefault(uid, UserQuota())

    def quota_format(self, mount_point: str) -> int:
        if not self.quotas_on:
            raise OSError(errno.ESRCH, os.strerror(errno.ESRCH), mount_point)
        return V2_FORMAT

    def get_user_quota(self, mount_point: str, uid: int) -> kernel.Dqblk:
        assert mount_point == self.mount_point
        self.quota_format(mount_point)  # Q_GETQUOTA fails with ESRCH too when quotas are off
        q = self.quota(uid)
        return kernel.Dqblk(block_soft=q.block_soft, block_hard=q.block_hard,
                            space_used=q.space_used, inode_soft=q.inode_soft,
                            inode_hard=q.inode_hard, inodes_used=q.inodes_used)

    def execute(self, argv: list[str]) -> str:
        if argv[0] == "quotaon":
            self.quotas_on = True
        elif argv[0] == "setquota":
            assert argv[1] == "-u" and argv[-1] == self.mount_point, argv
            q = self.quota(int(argv[2]))
            q.block_soft, q.block_hard, q.inode_soft, q.inode_hard = map(int, argv[3:7])
        else:
            raise AssertionError(f"unexpected command {argv}")
        return ""


@dataclass
class FakeSubvolume:
    id: int
    max_referenced: int = 0
    referenced: int = 16384


@dataclass
class FakeBtrfsState:
    subvolumes: dict[str, FakeSubvolume] = field(default_factory=dict)
    qgroups: set[str] = field(default_factory=set)
    next_id: int = 256
    quota_enabled: bool = False


class FakeBtrfsKernel(FakeKernel):
    """btrfs-progs, mount, losetup and mkfs.btrfs as far as the driver uses them: subvolume
    directories are made for real under tmp_path, everything else is state in `btrfs`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(monkeypatch)
        self.btrfs = FakeBtrfsState()
        self.loops: dict[str, str] = {}  # /dev/loopN -> backing file
        self.filesystems = "nodev\tproc\n\text4\n\tbtrfs\n"
        self.commands_on_path = {"btrfs", "mkfs.btrfs"}
        monkeypatch.setattr(kernel, "loop_backing_file", self.loops.get)
        monkeypatch.setattr(kernel, "loop_devices_of",
                            lambda path: [d for d, f in self.loops.items() if f == path])
        monkeypatch.setattr(kernel, "read_filesystems", lambda: self.filesystems)
        monkeypatch.setattr(kernel, "module_available", lambda name: False)
        monkeypatch.setattr(kernel, "have_command", lambda name: name in self.commands_on_path)
        monkeypatch.setattr(kernel, "count_inodes", lambda path: 3)

    def execute(self, argv: list[str]) -> str:
        handler = {"mount": self._mount, "umount": self._umount, "losetup": self._losetup,
                   "mkfs.btrfs": lambda a: "", "btrfs": self._btrfs}[argv[0]]
        return handler(argv)

    def _mount(self, argv: list[str]) -> str:
        image, target = argv[-2], argv[-1]
        device = f"/dev/loop{len(self.loops)}"
        self.loops[device] = image
        self.mounts.append(mountinfo_line(100 + len(self.mounts), target, "btrfs", device, "rw"))
        return ""

    def _umount(self, argv: list[str]) -> str:
        for line in reversed(self.mounts):
            if line.split()[4] == argv[1]:
                self.mounts.remove(line)
                device = line.split(" - ")[1].split()[1]
                self.loops.pop(device, None)  # mount -o loop sets autoclear
                return ""
        raise kernel.CommandFailed(argv, 32, f"umount: {argv[1]}: not mounted.")

    def _losetup(self, argv: list[str]) -> str:
        assert argv[1] == "-d"
        del self.loops[argv[2]]
        return ""

    def _btrfs(self, argv: list[str]) -> str:
        words, path = argv[1:3], argv[-1]
        if words == ["quota", "enable"]:
            self.btrfs.quota_enabled = True
        elif words == ["subvolume", "create"]:
            os.mkdir(path)
            self.btrfs.subvolumes[path] = FakeSubvolume(self.btrfs.next_id)
            self.btrfs.qgroups.add(f"0/{self.btrfs.next_id}")
            self.btrfs.next_id += 1
        elif words == ["inspect-internal", "rootid"]:
            return f"{self.btrfs.subvolumes[path].id}\n"
        elif words == ["subvolume", "delete"]:
            shutil.rmtree(path)
            del self.btrfs.subvolumes[path]
        elif words == ["subvolume", "sync"]:
            pass
        elif words == ["qgroup", "destroy"]:
            if argv[3] not in self.btrfs.qgroups:
                raise kernel.CommandFailed(argv, 1, "ERROR: unable to destroy quota group: "
                                                    "No such file or directory")
            self.btrfs.qgroups.remove(argv[3])
        elif words == ["qgroup", "limit"]:
            self.btrfs.subvolumes[path].max_referenced = 0 if argv[3] == "none" else int(argv[3])
        elif words == ["qgroup", "show"]:
            return self._show(argv[argv.index("-f") + 1])
        else:
            raise AssertionError(f"unexpected command {argv}")
        return ""

    def _show(self, path: str) -> str:
        sub = self.btrfs.subvolumes[path]
        limit = sub.max_referenced or "none"
        return ("Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n"
                "--------    ----------    ---------  --------------  -------------   ---- \n"
                f"0/{sub.id}  {sub.referenced}  {sub.referenced}  {limit}  none   "
                f"{os.path.basename(path)}\n")


@pytest.fixture
def quota_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeQuotaKernel:
    return FakeQuotaKernel(monkeypatch, str(tmp_path))


@pytest.fixture
def btrfs_kernel(monkeypatch: pytest.MonkeyPatch) -> FakeBtrfsKernel:
    return FakeBtrfsKernel(monkeypatch)


@pytest.fixture
def new_container():
    """Factory: a Container with a unique id in `depot`, owned by `uid`."""
    def make(depot: Path, uid: int = 10000) -> Container:
        container_id = "t" + secrets.token_hex(5)
        return Container(id=container_id, handle=container_id, path=Path(depot) / container_id,
                         uid=uid)
    return make


# --------------------------------------------------------------------------- real kernel

def real_btrfs_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    with open("/proc/filesystems") as f:
        if "\tbtrfs\n" not in f.read():
            return "the kernel has no btrfs (not in /proc/filesystems)"
    for tool in ("btrfs", "mkfs.btrfs", "losetup", "dd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture
def btrfs_settings(tmp_path: Path):
    """Settings for a driver on a fresh image under tmp_path; after the test, whatever is
    still mounted or attached there is removed, even if the driver's teardown failed."""
    reason = real_btrfs_reason()
    if reason:
        pytest.skip(reason)
    depot = tmp_path / "depot"
    depot.mkdir()
    settings = settings_from_dict({
        "server": {"container_depot_path": str(depot), "name_prefix": "wq" + secrets.token_hex(3)},
        "plugins": {"quota_disk": {"image": str(tmp_path / "disk.btrfs"),
                                   "volumes": str(tmp_path / "volumes"), "image_size": "1G"}},
    })
    yield settings
    _force_cleanup(tmp_path)


def _force_cleanup(top: Path) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in reversed(points):
        if point.startswith(str(top) + "/"):
            subprocess.run(["umount", "-l", point], check=False)
    for device in kernel.loop_devices_of(str(top / "disk.btrfs")):
        subprocess.run(["losetup", "-d", device], check=False)


@pytest.fixture
def btrfs_host(btrfs_settings) -> Iterator:
    """A BtrfsDriver whose setup_host ran; teardown_host runs afterwards."""
    from warden_quota_disk.btrfs_driver import BtrfsDriver

    BtrfsDriver.check_host(btrfs_settings)
    driver = BtrfsDriver(btrfs_settings)
    driver.setup_host(settings=btrfs_settings)
    try:
        yield driver
    finally:
        driver.teardown_host(settings=btrfs_settings)
