"""OverlayfsDriver's error mapping: the client's texts stay WardenErrors, OS-level failures of
setup_fs, teardown_fs and recover become DriverError("overlayfs: ...") naming what failed."""

import errno
import ipaddress
import os
from pathlib import Path

import pytest

from warden_framework.config import settings_from_dict
from warden_framework.container import Container
from warden_framework.errors import DriverError, WardenError
from warden_framework.idmap import IdMap
from warden_overlayfs import kernel
from warden_rootfs_common import layers as shared_layers
from warden_overlayfs.driver import OverlayfsDriver

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mount needs root")


@pytest.fixture
def settings(lower: Path):
    return settings_from_dict({"server": {"container_rootfs_path": str(lower)},
                               "drivers": {"rootfs": "overlayfs", "disk": None}})


@pytest.fixture
def driver(settings) -> OverlayfsDriver:
    return OverlayfsDriver(settings)


@pytest.fixture
def container(container_dir: Path) -> Container:
    c = Container(id="0123456789b", handle="h", path=container_dir)
    c.network = ipaddress.IPv4Network("10.254.0.12/30")
    c.uid = 10008
    return c


def test_setup_fs_with_a_missing_rootfs_keeps_the_clients_text(driver, settings,
                                                                container: Container,
                                                                tmp_path: Path) -> None:
    container.rootfs_request = str(tmp_path / "nope")
    with pytest.raises(WardenError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert type(info.value) is WardenError
    assert str(info.value) == f"rootfs {tmp_path / 'nope'} not found"
    assert os.listdir(container.path) == []


def test_setup_fs_reports_an_unmountable_rootfs_path_as_a_driver_error(
        driver, settings, container: Container, tmp_path: Path) -> None:
    odd = tmp_path / "lower:v2"
    odd.mkdir()
    container.rootfs_request = str(odd)
    with pytest.raises(DriverError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert str(info.value) == (f"overlayfs: mount overlay on {container.rootfs_dir}: "
                               f"Invalid argument (path {odd} contains one of , : \\)")
    assert isinstance(info.value.__cause__, kernel.MountError)
    assert os.listdir(container.path) == []


@pytest.mark.integration
@root_only
def test_setup_fs_reports_unwritable_etc_files_as_a_driver_error(
        driver, settings, container: Container, lower: Path) -> None:
    (lower / "etc" / "passwd").unlink()
    (lower / "etc" / "group").unlink()
    (lower / "etc").rmdir()
    (lower / "etc").write_text("a file where /etc should be\n")
    with pytest.raises(DriverError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert str(info.value) == (f"overlayfs: writing /etc files in {container.rootfs_dir}: "
                               f"Not a directory")
    assert kernel.is_mounted(container.rootfs_dir)  # failed halfway: teardown_fs removes it
    driver.teardown_fs(container=container, record=None)
    assert not kernel.mounts_under(container.path)


def test_teardown_fs_reports_a_mount_it_cannot_remove(driver, container: Container,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stuck = str(container.rootfs_dir)
    monkeypatch.setattr(kernel, "mounts_under",
                        lambda *dirs: [stuck] if stuck in map(str, dirs) else [])
    monkeypatch.setattr(kernel, "unmount", lambda target: None)
    with pytest.raises(DriverError,
                       match=f"^overlayfs: unmount {stuck}: Device or resource busy$"):
        driver.teardown_fs(container=container, record=None)


def test_teardown_fs_reports_a_layer_it_cannot_delete(driver, container: Container,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (container.path / "upper").mkdir()

    def refuse(path: Path) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(shared_layers, "remove_tree", refuse)
    with pytest.raises(DriverError) as info:
        driver.teardown_fs(container=container, record=None)
    assert str(info.value) == (f"overlayfs: removing the layers in {container.path}: "
                               f"Permission denied")
    assert isinstance(info.value.__cause__, PermissionError)


def test_recover_reports_a_rootfs_gone_since_create_as_a_driver_error(
        driver, settings, container: Container, tmp_path: Path) -> None:
    container.records["rootfs"] = {"lower": str(tmp_path / "gone")}
    with pytest.raises(DriverError,
                       match=f"^overlayfs: rootfs {tmp_path / 'gone'} not found$"):
        driver.recover(container=container, settings=settings)


@pytest.mark.integration
@root_only
def test_setup_fs_puts_upper_and_work_in_the_disk_drivers_volume(
        driver, settings, container: Container, lower: Path, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    container.records["disk"] = {"subvolume": str(volume)}
    record = driver.setup_fs(container=container, settings=settings)
    try:
        assert record == {"lower": str(lower)}
        assert sorted(os.listdir(volume)) == ["upper", "work"]
        assert sorted(os.listdir(container.path)) == ["lower", "rootfs"]
        assert (volume / "upper" / "etc" / "hostname").read_text() == "0123456789b\n"
    finally:
        driver.teardown_fs(container=container, record=record)
    assert os.listdir(volume) == [] and os.listdir(container.path) == []
    assert not kernel.mounts_under(container.path)


@pytest.mark.integration
@root_only
def test_setup_fs_with_a_user_namespace_shows_the_rootfs_owned_by_the_containers_range(
        driver, settings, container: Container, lower: Path) -> None:
    """Host root's files appear as the range's root, vcap's home as the range's vcap, and a
    host-side look at the union never shows a host id outside the range."""
    container.id_map = IdMap(3_900_000_000, 65536)
    base = container.id_map.host_base
    record = driver.setup_fs(container=container, settings=settings)
    try:
        root = container.rootfs_dir
        assert lower.stat().st_uid == 0
        for path in (root, root / "etc", root / "etc" / "hosts", root / "etc" / "passwd"):
            assert (path.stat().st_uid, path.stat().st_gid) == (base, base), path
        home = root / "home" / "vcap"
        assert (home.stat().st_uid, home.stat().st_gid) == (base + 10008, base + 10008)
        assert "vcap:x:10008:10008:" in (root / "etc" / "passwd").read_text()
        # the lower layer itself is read-only and nosuid, nodev for everyone
        with pytest.raises(OSError) as info:
            (container.path / "lower" / "new").write_text("x")
        assert info.value.errno == errno.EROFS
        options = {line.split()[4]: line.split()[5] for line in open("/proc/self/mountinfo")}
        assert {"nosuid", "nodev"} <= set(options[str(root)].split(","))
        assert "idmapped" in options[str(container.path / "lower")].split(",")
    finally:
        driver.teardown_fs(container=container, record=record)
    assert not kernel.mounts_under(container.path) and os.listdir(container.path) == []


@pytest.mark.integration
@root_only
def test_copy_in_of_a_user_namespaced_container_writes_as_its_vcap(
        driver, settings, container: Container, lower: Path, tmp_path: Path) -> None:
    container.id_map = IdMap(3_900_000_000, 65536)
    vcap = container.id_map.to_host(10008)
    src = tmp_path / "payload"
    src.write_text("data")
    os.chmod(src, 0o4755)
    record = driver.setup_fs(container=container, settings=settings)
    try:
        driver.copy_in(container=container, src_path=str(src), dst_path="/home/vcap/p")
        got = container.rootfs_dir / "home" / "vcap" / "p"
        assert (got.stat().st_uid, oct(got.stat().st_mode & 0o7777)) == (vcap, "0o755")
        with pytest.raises(WardenError, match="^copy_in: /etc/p: Permission denied$"):
            driver.copy_in(container=container, src_path=str(src), dst_path="/etc/p")
        assert not (container.rootfs_dir / "etc" / "p").exists()
    finally:
        driver.teardown_fs(container=container, record=record)
