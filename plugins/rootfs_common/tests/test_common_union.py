"""union: what UnionRootfsDriver gives a subclass: inherited hooks pluggy registers, check_host
around the subclass's filesystem check, the record, and the DriverError texts. The subclass
here has stand-in layers and kernel objects; the real drivers run in plugins/overlayfs, aufs."""

from __future__ import annotations

import errno
import ipaddress
import os
from pathlib import Path

import pytest

from warden_framework.config import settings_from_dict
from warden_framework.container import Container
from warden_framework.errors import DriverError, DriverUnavailable, WardenError
from warden_framework.plugins import build_plugin_manager
from warden_rootfs_common import layers as shared_layers
from warden_rootfs_common.union import UnionRootfsDriver, layer_dir


class OddPath(ValueError):
    """Stands in for a driver's own error about a path its mount cannot take."""


class StandInLayers:
    """Records the layer calls; `fail` is raised by the next create or remove."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: Exception | None = None

    def fs_paths(self, container_dir: Path, layer_dir: Path | None = None):
        upper, rootfs = shared_layers.layer_paths(container_dir, layer_dir)
        return shared_layers.FsPaths(upper=upper, rootfs=rootfs)

    def create_layers(self, container_dir: Path, lower, layer_dir: Path | None = None,
                      id_map=None):
        self.calls.append(("create", lower, layer_dir))
        self._maybe_fail()
        paths = self.fs_paths(container_dir, layer_dir)
        (paths.rootfs / "etc").mkdir(parents=True, exist_ok=True)
        (paths.rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        (paths.rootfs / "etc" / "group").write_text("root:x:0:\n")
        return paths

    def remove_layers(self, container_dir: Path, layer_dir: Path | None = None) -> None:
        self.calls.append(("remove", layer_dir))
        self._maybe_fail()

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            fail, self.fail = self.fail, None
            raise fail


class StandInKernel:
    mounted: bool = False

    def is_mounted(self, target: Path) -> bool:
        return self.mounted

    def mounts_under(self, *targets: Path) -> list[str]:
        return []

    def unmount(self, target: Path) -> None:
        pass


class UnionfsDriver(UnionRootfsDriver):
    name = "unionfs"
    layers = StandInLayers()
    kernel = StandInKernel()
    path_errors = (OddPath,)
    proc_seen: list[Path] = []

    @classmethod
    def check_filesystem(cls, proc_filesystems: Path) -> None:
        cls.proc_seen.append(proc_filesystems)
        if "unionfs" not in Path(proc_filesystems).read_text():
            raise DriverUnavailable("no unionfs")

    def fs_record(self, lower: Path, paths) -> dict:
        return {**super().fs_record(lower, paths), "extra": "yes"}


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    (tmp_path / "lower").mkdir()
    return tmp_path / "lower"


@pytest.fixture
def settings(lower: Path):
    return settings_from_dict({"server": {"container_rootfs_path": str(lower)},
                               "drivers": {"disk": None}})


@pytest.fixture
def driver(settings, monkeypatch: pytest.MonkeyPatch) -> UnionfsDriver:
    monkeypatch.setattr(UnionfsDriver, "layers", StandInLayers())
    monkeypatch.setattr(UnionfsDriver, "kernel", StandInKernel())
    return UnionfsDriver(settings)


@pytest.fixture
def container(tmp_path: Path) -> Container:
    (tmp_path / "c").mkdir()
    return Container(id="0123456789c", handle="h", path=tmp_path / "c")


def test_the_inherited_hooks_are_registered_for_the_subclass(driver) -> None:
    pm = build_plugin_manager({"rootfs": driver}, load_entry_points=False)
    for hook in ("setup_fs", "teardown_fs", "copy_in", "copy_out", "info", "recover"):
        assert [i.plugin for i in getattr(pm.hook, hook).get_hookimpls()] == [driver], hook


def test_check_host_runs_the_filesystem_check_on_the_given_file(settings, tmp_path: Path) -> None:
    proc = tmp_path / "filesystems"
    proc.write_text("nodev\tsysfs\n")
    with pytest.raises(DriverUnavailable, match="^no unionfs$"):
        UnionfsDriver.check_host(settings, proc_filesystems=proc)
    proc.write_text("nodev\tunionfs\n")
    assert UnionfsDriver.check_host(settings, proc_filesystems=proc) is None
    assert UnionfsDriver.proc_seen[-2:] == [proc, proc]


def test_check_host_refuses_a_missing_rootfs_path(tmp_path: Path) -> None:
    proc = tmp_path / "filesystems"
    proc.write_text("nodev\tunionfs\n")
    settings = settings_from_dict({"server": {"container_rootfs_path": str(tmp_path / "no")}})
    with pytest.raises(DriverUnavailable, match=f"^container_rootfs_path does not exist "
                                                f"{tmp_path / 'no'} "):
        UnionfsDriver.check_host(settings, proc_filesystems=proc)


@pytest.mark.skipif(os.geteuid() != 0, reason="the vcap user's files are chowned")
def test_setup_fs_returns_the_subclasss_record_and_uses_the_disk_volume(
        driver, settings, container: Container, lower: Path, tmp_path: Path) -> None:
    container.records["disk"] = {"subvolume": str(tmp_path / "vol")}
    container.network = ipaddress.IPv4Network("10.254.0.16/30")
    container.uid = 10009
    assert driver.setup_fs(container=container, settings=settings) == {"lower": str(lower),
                                                                       "extra": "yes"}
    assert driver.layers.calls == [("create", lower.resolve(), tmp_path / "vol")]
    assert layer_dir(container) == tmp_path / "vol"
    assert layer_dir(Container(id="x", handle="x", path=tmp_path)) is None


def test_setup_fs_refuses_a_missing_rootfs_with_the_clients_text(
        driver, settings, container: Container, tmp_path: Path) -> None:
    container.rootfs_request = str(tmp_path / "gone")
    with pytest.raises(WardenError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert type(info.value) is WardenError
    assert str(info.value) == f"rootfs {tmp_path / 'gone'} not found"
    assert driver.layers.calls == []


def test_a_path_error_of_the_subclass_keeps_its_text_after_the_name(
        driver, settings, container: Container) -> None:
    driver.layers.fail = OddPath("path /x:y contains one of , : =")
    with pytest.raises(DriverError, match="^unionfs: path /x:y contains one of , : =$"):
        driver.setup_fs(container=container, settings=settings)


def test_an_os_error_says_what_failed(driver, settings, container: Container) -> None:
    container.records["rootfs"] = {}
    driver.layers.fail = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/x")
    with pytest.raises(DriverError, match=f"^unionfs: remounting the layers in "
                                          f"{container.path}: Permission denied$") as info:
        driver.recover(container=container, settings=settings)
    assert isinstance(info.value.__cause__, PermissionError)


def test_recover_remounts_only_an_unmounted_root_from_the_recorded_lower(
        driver, settings, container: Container, lower: Path) -> None:
    driver.recover(container=container, settings=settings)
    container.records["rootfs"] = {"lower": str(lower)}
    driver.kernel.mounted = True
    driver.recover(container=container, settings=settings)
    assert driver.layers.calls == []
    driver.kernel.mounted = False
    driver.recover(container=container, settings=settings)
    assert driver.layers.calls == [("create", lower, None)]
