"""AufsDriver through its hooks with the recording fake kernel: the start-up refusal, the mount
setup_fs asks for, the /etc files and vcap user, teardown, recover, info and copying. The
mount point stays a plain directory, so no aufs is needed; ownership changes need root."""

import ipaddress
import os
import re
from pathlib import Path

import pytest

from warden_aufs import kernel
from warden_aufs.driver import NO_AUFS, AufsDriver
from warden_framework.config import settings_from_dict
from warden_framework.container import Container
from warden_framework.drivers import RootfsDriver, load_driver_class
from warden_framework.errors import DriverError, DriverUnavailable, WardenError
from warden_framework.plugins import build_plugin_manager

UID = 10007
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")


@pytest.fixture
def settings(lower: Path):
    return settings_from_dict({"server": {"container_rootfs_path": str(lower)},
                               "drivers": {"rootfs": "aufs", "disk": None},
                               "user": {"namespaces": False}})


@pytest.fixture
def driver(settings) -> AufsDriver:
    return AufsDriver(settings)


@pytest.fixture
def container(container_dir: Path) -> Container:
    c = Container(id="0123456789a", handle="h", path=container_dir)
    c.network = ipaddress.IPv4Network("10.254.0.8/30")
    c.uid = UID
    return c


def filesystems(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "filesystems"
    path.write_text(text)
    return path


# ---- start-up ---------------------------------------------------------------------------

def test_check_host_refuses_a_kernel_without_aufs_naming_it(settings, tmp_path: Path) -> None:
    proc = filesystems(tmp_path, "nodev\tsysfs\nnodev\toverlay\n\text4\nnodev\taufsx\n")
    with pytest.raises(DriverUnavailable) as info:
        AufsDriver.check_host(settings, proc_filesystems=proc)
    assert str(info.value) == NO_AUFS
    assert NO_AUFS == ("the kernel has no aufs filesystem "
                       "(not in mainline Linux; use rootfs: overlayfs)")


def test_check_host_accepts_a_kernel_with_aufs(settings, tmp_path: Path) -> None:
    proc = filesystems(tmp_path, "nodev\tsysfs\nnodev\taufs\n\text4\n")
    assert AufsDriver.check_host(settings, proc_filesystems=proc) is None


def test_check_host_refuses_user_namespaces_which_need_an_idmapped_branch(
        lower: Path, tmp_path: Path) -> None:
    proc = filesystems(tmp_path, "nodev\taufs\n")
    settings = settings_from_dict({"server": {"container_rootfs_path": str(lower)}})
    with pytest.raises(DriverUnavailable, match="^aufs: aufs cannot show the rootfs idmapped "
                                                ".*set user.namespaces: false"):
        AufsDriver.check_host(settings, proc_filesystems=proc)


def test_check_host_refuses_a_missing_rootfs_path(tmp_path: Path) -> None:
    proc = filesystems(tmp_path, "nodev\taufs\n")
    settings = settings_from_dict({"server": {"container_rootfs_path": str(tmp_path / "no")}})
    with pytest.raises(DriverUnavailable, match=f"container_rootfs_path does not exist "
                                                f"{tmp_path / 'no'} "):
        AufsDriver.check_host(settings, proc_filesystems=proc)


def test_check_host_names_an_unreadable_filesystems_file(settings, tmp_path: Path) -> None:
    with pytest.raises(DriverUnavailable,
                       match=f"^cannot read {tmp_path / 'none'}: No such file or directory$"):
        AufsDriver.check_host(settings, proc_filesystems=tmp_path / "none")


def test_check_host_reads_proc_filesystems_by_default(settings) -> None:
    if kernel.has_filesystem("aufs"):
        AufsDriver.check_host(settings)
    else:
        with pytest.raises(DriverUnavailable, match=f"^{re.escape(NO_AUFS)}$"):
            AufsDriver.check_host(settings)


def test_entry_point_aufs_loads_a_rootfs_driver_whose_hooks_are_all_registered(driver) -> None:
    assert load_driver_class("rootfs", "aufs") is AufsDriver
    assert issubclass(AufsDriver, RootfsDriver)
    pm = build_plugin_manager({"rootfs": driver}, load_entry_points=False)
    for hook in ("setup_fs", "teardown_fs", "copy_in", "copy_out", "info", "recover"):
        impls = getattr(pm.hook, hook).get_hookimpls()
        assert [i.plugin for i in impls] == [driver], hook


# ---- setup and teardown -----------------------------------------------------------------

@root_only
def test_hook_setup_fs_mounts_the_branches_and_writes_the_etc_files(
        fake_kernel, driver, settings, container: Container, lower: Path) -> None:
    record = driver.setup_fs(container=container, settings=settings)
    c = container.path
    assert fake_kernel.calls == [(
        "mount", "none", str(c / "rootfs"), "aufs", 0,
        b"br:%s/upper=rw:%s=ro+wh,xino=%s/xino" % (os.fsencode(c), os.fsencode(lower),
                                                   os.fsencode(c)))]
    assert record == {"lower": str(lower), "upper": str(c / "upper")}
    etc = container.rootfs_dir / "etc"
    assert (etc / "hostname").read_text() == "0123456789a\n"
    assert (etc / "hosts").read_text() == "127.0.0.1 localhost\n10.254.0.10 0123456789a\n"
    assert f"vcap:x:{UID}:{UID}::/home/vcap:/bin/bash" in (etc / "passwd").read_text()
    home = (container.rootfs_dir / "home" / "vcap").stat()
    assert (home.st_uid, home.st_gid) == (UID, UID)


def test_hook_setup_fs_refuses_a_missing_rootfs_without_mounting(
        fake_kernel, driver, settings, container: Container, tmp_path: Path) -> None:
    container.rootfs_request = str(tmp_path / "gone")
    with pytest.raises(WardenError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert str(info.value) == f"rootfs {tmp_path / 'gone'} not found"
    assert fake_kernel.calls == []


def test_hook_setup_fs_refuses_a_missing_bind_source_without_mounting(
        fake_kernel, driver, settings, container: Container, tmp_path: Path) -> None:
    container.binds = [{"src": str(tmp_path / "src"), "dst": "/mnt", "mode": "rw"}]
    with pytest.raises(WardenError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert str(info.value) == f"Source path for bind mount does not exist: {tmp_path / 'src'}"
    assert fake_kernel.calls == []


def test_hook_setup_fs_reports_a_failed_mount_as_a_driver_error(
        fake_kernel, driver, settings, container: Container) -> None:
    fake_kernel.fail_mount = 19  # ENODEV: what mount(2) says for an unknown type
    with pytest.raises(DriverError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert str(info.value) == (f"aufs: mount aufs on {container.rootfs_dir}: No such device "
                               f"(the kernel has no aufs filesystem)")
    assert os.listdir(container.path) == []


def test_hook_setup_fs_refuses_a_rootfs_path_aufs_cannot_parse(
        fake_kernel, driver, settings, container: Container, tmp_path: Path) -> None:
    odd_lower = tmp_path / "real:v2"
    odd_lower.mkdir()
    container.rootfs_request = str(odd_lower)
    with pytest.raises(DriverError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert str(info.value) == f"aufs: path {odd_lower} contains one of , : ="
    assert fake_kernel.calls == []
    assert os.listdir(container.path) == []


def test_hook_setup_fs_reports_unwritable_etc_files_as_a_driver_error(
        fake_kernel, driver, settings, container: Container) -> None:
    container.rootfs_dir.mkdir()
    (container.rootfs_dir / "etc").write_text("a file where /etc should be\n")
    with pytest.raises(DriverError) as info:
        driver.setup_fs(container=container, settings=settings)
    assert str(info.value) == f"aufs: writing /etc files in {container.rootfs_dir}: Not a directory"
    assert len(fake_kernel.mounts()) == 1  # failed halfway: teardown_fs removes the rest


@root_only
def test_hook_teardown_fs_unmounts_then_removes_and_twice_is_harmless(
        fake_kernel, driver, settings, container: Container) -> None:
    (container.path / "snapshot.json").write_text("{}")
    record = driver.setup_fs(container=container, settings=settings)
    driver.teardown_fs(container=container, record=record)
    assert fake_kernel.calls[1:] == [("unmount", str(container.rootfs_dir))]
    assert fake_kernel.listing_at_unmount[str(container.rootfs_dir)] == [
        "rootfs", "snapshot.json", "upper"]
    assert os.listdir(container.path) == ["snapshot.json"]
    driver.teardown_fs(container=container, record=None)
    assert len(fake_kernel.calls) == 2
    assert os.listdir(container.path) == ["snapshot.json"]


def test_hook_teardown_fs_reports_a_mount_it_cannot_remove(
        fake_kernel, driver, container: Container, monkeypatch) -> None:
    container.rootfs_dir.mkdir()
    fake_kernel.mounted.append(str(container.rootfs_dir))
    monkeypatch.setattr(kernel, "unmount", lambda target: None)
    with pytest.raises(DriverError,
                       match=f"^aufs: unmount {container.rootfs_dir}: Device or resource busy$"):
        driver.teardown_fs(container=container, record=None)
    fake_kernel.mounted.clear()


@root_only
def test_hook_setup_fs_puts_the_upper_branch_in_the_disk_drivers_volume(
        fake_kernel, driver, settings, container: Container, lower: Path,
        tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    container.records["disk"] = {"subvolume": str(volume)}
    container.records["rootfs"] = record = driver.setup_fs(container=container, settings=settings)
    c = container.path
    assert fake_kernel.mounts()[0][5] == b"br:%s/upper=rw:%s=ro+wh,xino=%s/xino" % (
        os.fsencode(volume), os.fsencode(lower), os.fsencode(c))
    assert record == {"lower": str(lower), "upper": str(volume / "upper")}
    assert os.listdir(c) == ["rootfs"]
    assert (container.rootfs_dir / "etc" / "hostname").read_text() == "0123456789a\n"
    driver.teardown_fs(container=container, record=record)
    assert os.listdir(c) == [] and os.listdir(volume) == []


# ---- recovery ---------------------------------------------------------------------------

@root_only
def test_hook_recover_mounts_again_only_when_the_mount_is_gone(
        fake_kernel, driver, settings, container: Container) -> None:
    container.records["rootfs"] = driver.setup_fs(container=container, settings=settings)
    driver.recover(container=container, settings=settings)
    assert len(fake_kernel.mounts()) == 1
    fake_kernel.mounted.clear()  # a reboot of the server's mount namespace
    driver.recover(container=container, settings=settings)
    assert fake_kernel.mounts()[1] == fake_kernel.mounts()[0]


def test_hook_recover_leaves_a_container_without_a_rootfs_step_alone(
        fake_kernel, driver, settings, container: Container) -> None:
    driver.recover(container=container, settings=settings)
    assert fake_kernel.calls == []


# ---- requests on a live container --------------------------------------------------------

@root_only
def test_hook_info_reports_the_upper_branchs_usage(fake_kernel, driver, settings,
                                                   container: Container) -> None:
    assert driver.info(container=container, full=True) is None  # no rootfs step yet
    container.records["rootfs"] = driver.setup_fs(container=container, settings=settings)
    before = driver.info(container=container, full=True)["disk_stat"]
    # With the fake, the mount point is a plain dir: write to the upper branch directly.
    (container.path / "upper" / "blob").write_bytes(b"x" * 100_000)
    after = driver.info(container=container, full=True)["disk_stat"]
    assert after["bytes_used"] >= before["bytes_used"] + 100_000
    assert after["inodes_used"] == before["inodes_used"] + 1


def test_hook_info_is_silent_when_a_disk_driver_reports_usage(lower: Path,
                                                              container: Container) -> None:
    settings = settings_from_dict({"server": {"container_rootfs_path": str(lower)},
                                   "drivers": {"disk": "btrfs"}})
    container.records["rootfs"] = {}
    assert AufsDriver(settings).info(container=container, full=True) is None


@root_only
def test_hook_copy_in_and_copy_out_go_through_the_root(fake_kernel, driver, settings,
                                                      container: Container,
                                                      tmp_path: Path) -> None:
    driver.setup_fs(container=container, settings=settings)  # the fake root: /etc and home
    src = tmp_path / "payload"
    src.write_text("hello\n")
    driver.copy_in(container=container, src_path=str(src), dst_path="in")  # vcap's home
    landed = container.rootfs_dir / "home" / "vcap" / "in"
    assert landed.read_text() == "hello\n"
    assert (landed.stat().st_uid, landed.stat().st_gid) == (UID, UID)
    driver.copy_out(container=container, src_path="/home/vcap/in", dst_path=str(tmp_path / "out"),
                    owner=None)
    assert (tmp_path / "out").read_text() == "hello\n"
    assert (tmp_path / "out").stat().st_uid == 0


def test_hook_copy_out_of_a_missing_path_names_it(fake_kernel, driver, settings,
                                                  container: Container, tmp_path: Path) -> None:
    container.rootfs_dir.mkdir()
    with pytest.raises(WardenError, match="^copy_out: /nope: No such file or directory$"):
        driver.copy_out(container=container, src_path="/nope", dst_path=str(tmp_path / "o"),
                        owner=None)
