"""What the tmpfs driver does beyond the rootfs contract: its config key and host check (pure),
and on the real kernel the mount itself, the id shift, copies that stay inside the root, the
lazy detach of a busy root, and a recover that refuses a root the host lost."""

import os
from pathlib import Path

import pytest

from warden_framework.config import settings_from_dict
from warden_framework.container import Container, IdGenerator
from warden_framework.errors import ConfigError, DriverError, DriverUnavailable, WardenError
from warden_framework.idmap import IdMap
from warden_framework.plugins import build_plugin_manager
from warden_framework.testing.contract import (CONTRACT_NETWORK, CONTRACT_UID, detach,
                                               make_lower, mounts_under, reloaded)
from warden_tmpfs_rootfs.driver import DEFAULT_SIZE, TmpfsRootfsDriver, size_from

SIZE = 8 << 20
HOST_BASE = 3_000_000_000  # a range of no real account; the files only ever carry it


def settings(lower: Path, **plugin) -> object:
    return settings_from_dict({"server": {"container_rootfs_path": str(lower)},
                               "drivers": {"disk": None},
                               "plugins": {"tmpfs_rootfs": plugin or {"size": SIZE}}})


# ---- pure: config and host check -----------------------------------------------------------

def test_size_takes_bytes_or_a_unit_and_defaults(tmp_path):
    assert size_from(settings(tmp_path, size="64M")) == 64 << 20
    assert size_from(settings(tmp_path, size=4096)) == 4096
    assert size_from(settings_from_dict({})) == DEFAULT_SIZE


@pytest.mark.parametrize("plugin", [{"size": "lots"}, {"size": 0}, {"size": True},
                                    {"sise": "8M"}])
def test_size_refuses_what_is_not_a_size(tmp_path, plugin):
    with pytest.raises(ConfigError, match=r"^plugins\.tmpfs_rootfs"):
        size_from(settings(tmp_path, **plugin))


def test_check_host_refuses_a_kernel_without_tmpfs(tmp_path):
    fake = tmp_path / "filesystems"
    fake.write_text("nodev\tsysfs\nnodev\tproc\n\text4\n")
    with pytest.raises(DriverUnavailable, match="the kernel has no tmpfs filesystem"):
        TmpfsRootfsDriver.check_host(settings(tmp_path), proc_filesystems=fake)


def test_check_host_refuses_a_disk_driver(tmp_path):
    configured = settings_from_dict({"server": {"container_rootfs_path": str(tmp_path)},
                                     "drivers": {"disk": "setquota"}})
    with pytest.raises(DriverUnavailable, match="cannot limit a tmpfs root"):
        TmpfsRootfsDriver.check_host(configured)


# ---- the real kernel -----------------------------------------------------------------------

@pytest.fixture
def lower(tmp_path):
    return make_lower(tmp_path / "lower")


@pytest.fixture
def driver(lower):
    if os.geteuid() != 0:
        pytest.skip("tmpfs driver: mounting needs root")
    return TmpfsRootfsDriver(settings(lower))


@pytest.fixture
def container(tmp_path, driver):
    """A container dir as the orchestrator hands it over; its root is gone after the test."""
    cid = IdGenerator()()
    c = Container(id=cid, handle=f"tmpfs-{cid}", path=tmp_path / "depot" / cid)
    c.path.mkdir(parents=True)
    c.network, c.uid = CONTRACT_NETWORK, CONTRACT_UID
    yield c
    driver.teardown_fs(container=c, record=None)
    left = mounts_under(c.path)
    for point in left:
        detach(point)
    assert not left, f"teardown_fs left mounts {left}"
    assert not c.rootfs_dir.exists()


def setup(driver, container, lower):
    container.records["rootfs"] = driver.setup_fs(container=container, settings=settings(lower))
    return container.rootfs_dir


def mount_entry(target: Path) -> tuple[str, set[str]]:
    """(fstype, mount options) of the mount on `target`, from the kernel's table."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == str(target):
                return right.split()[0], set(left.split()[5].split(","))
    raise AssertionError(f"nothing mounted on {target}")


@pytest.mark.integration
def test_setup_fs_mounts_a_nosuid_nodev_tmpfs_of_the_configured_size(driver, container, lower):
    root = setup(driver, container, lower)
    fstype, options = mount_entry(root)
    assert fstype == "tmpfs" and {"nosuid", "nodev"} <= options
    st = os.statvfs(root)
    assert st.f_blocks * st.f_frsize == SIZE
    with pytest.raises(OSError):  # the size is a real bound
        (root / "tmp" / "big").write_bytes(b"\0" * (SIZE + 4096))


@pytest.mark.integration
def test_setup_fs_shifts_every_owner_into_the_id_map(driver, container, lower):
    os.chown(lower / "data" / "keep", 5, 7)
    container.id_map = IdMap(HOST_BASE, 65536)
    root = setup(driver, container, lower)

    def owner(path):
        return path.lstat().st_uid, path.lstat().st_gid

    assert owner(root) == (HOST_BASE, HOST_BASE)
    assert owner(root / "data" / "keep") == (HOST_BASE + 5, HOST_BASE + 7)
    assert owner(root / "link") == (HOST_BASE, HOST_BASE)
    assert owner(root / "etc" / "hostname") == (HOST_BASE, HOST_BASE)
    vcap = HOST_BASE + CONTRACT_UID
    assert owner(root / "home" / "vcap") == (vcap, vcap)
    assert (root / "dev").is_dir() and (root / "proc").is_dir()  # wshd mounts on them


@pytest.mark.integration
def test_setup_fs_refuses_an_owner_outside_the_range(driver, container, lower):
    os.chown(lower / "data" / "keep", 70000, 0)
    container.id_map = IdMap(HOST_BASE, 65536)
    with pytest.raises(DriverError, match=r"data/keep: id 70000 is outside"):
        setup(driver, container, lower)


@pytest.mark.integration
def test_copy_in_resolves_a_planted_symlink_inside_the_root(driver, container, lower, tmp_path):
    root = setup(driver, container, lower)
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (root / "tmp" / "esc").symlink_to(host_dir)  # container root points a name at the host
    twin = root / str(host_dir).lstrip("/")  # where that name leads inside the root
    twin.mkdir(parents=True)
    os.chown(twin, CONTRACT_UID, CONTRACT_UID)
    src = tmp_path / "payload"
    src.write_text("payload\n")
    driver.copy_in(container=container, src_path=str(src), dst_path="/tmp/esc/")
    assert list(host_dir.iterdir()) == []
    assert (twin / "payload").read_text() == "payload\n"


@pytest.mark.integration
def test_copy_in_writes_as_vcap_so_etc_refuses_it(driver, container, lower, tmp_path):
    root = setup(driver, container, lower)
    src = tmp_path / "intruder"
    src.write_text("x\n")
    with pytest.raises(WardenError, match="Permission denied"):
        driver.copy_in(container=container, src_path=str(src), dst_path="/etc/")
    assert not (root / "etc" / "intruder").exists()


@pytest.mark.integration
def test_teardown_fs_detaches_a_busy_root(driver, container, lower):
    root = setup(driver, container, lower)
    held = os.open(root / "data" / "keep", os.O_RDONLY)
    try:
        driver.teardown_fs(container=container, record=container.records["rootfs"])
        assert mounts_under(container.path) == []
        assert not root.exists()
        assert os.read(held, 64) == b"lower keep\n"  # lives on with the last holder
    finally:
        os.close(held)


@pytest.mark.integration
def test_recover_refuses_a_root_the_host_lost(driver, container, lower):
    root = setup(driver, container, lower)
    detach(root)
    with pytest.raises(WardenError, match="no longer mounted.*files are lost"):
        driver.recover(container=reloaded(container), settings=settings(lower))
    with pytest.raises(WardenError, match="not mounted"):
        driver.copy_out(container=container, src_path="/data", dst_path="/tmp", owner=None)


def test_the_driver_registers_as_the_owner_of_every_rootfs_hook(tmp_path):
    """The server's own start-up checks: every abstract method marked @hookimpl, every
    implementation matching a hookspec, one owner per rootfs hook."""
    pm = build_plugin_manager({"rootfs": TmpfsRootfsDriver(settings(tmp_path))},
                              load_entry_points=False)
    assert pm.hook.teardown_fs.get_hookimpls()[0].plugin_name.startswith("rootfs:")
