"""The BtrfsDriver's hooks against a recording fake of kernel.py: the btrfs, mount and
losetup command lines it sends, config defaults and validation, refusals of inode and soft
limits, and the start-up check. The real-kernel tests are in test_btrfs_kernel.py."""

import pytest

from warden_framework.config import settings_from_dict
from warden_framework.errors import ConfigError, DriverError, DriverUnavailable, WardenError
from warden_quota_disk import volumes
from warden_quota_disk.btrfs_driver import BtrfsDriver


@pytest.fixture
def settings(tmp_path):
    return settings_from_dict({
        "server": {"container_depot_path": str(tmp_path / "depot")},
        "plugins": {"quota_disk": {"image": str(tmp_path / "disk.btrfs"),
                                   "volumes": str(tmp_path / "volumes"), "image_size": "1G"}},
    })


@pytest.fixture
def driver(settings, btrfs_kernel):
    BtrfsDriver.check_host(settings)
    drv = BtrfsDriver(settings)
    drv.setup_host(settings=settings)
    btrfs_kernel.commands.clear()
    return drv


@pytest.fixture
def container(driver, btrfs_kernel, new_container, settings):
    c = new_container(settings.depot)
    c.records["disk"] = driver.setup_disk(container=c, settings=settings)
    btrfs_kernel.commands.clear()
    return c


def subvolume(c) -> str:
    return c.records["disk"]["subvolume"]


# ---- config

def test_config_defaults_sit_beside_the_depot(tmp_path):
    cfg = volumes.config_from(settings_from_dict({"server": {"container_depot_path": "/srv/w/depot"}}))
    assert (str(cfg.volumes), str(cfg.image), cfg.image_size) == (
        "/srv/w/depot.volumes", "/srv/w/depot.btrfs", 4 * 2**30)


@pytest.mark.parametrize("value, size", [(4096, 4096), ("512M", 512 * 2**20), ("2GiB", 2 * 2**30),
                                         ("1t", 2**40), ("100", 100)])
def test_image_size_accepts_bytes_and_suffixes(value, size):
    assert volumes.parse_size(value) == size


@pytest.mark.parametrize("plugin_config, message", [
    ({"image_size": "lots"}, "image_size: expected a size like 4G"),
    ({"image_size": 0}, "image_size: expected a size like 4G"),
    ({"image": "relative.img"}, "image: expected an absolute path"),
    ({"volume": "/x"}, "quota_disk.volume: unknown key"),
])
def test_bad_config_is_refused_at_start_up(plugin_config, message):
    settings = settings_from_dict({"plugins": {"quota_disk": plugin_config}})
    with pytest.raises(ConfigError, match=message):
        BtrfsDriver.check_host(settings)


# ---- host

def test_hook_setup_host_makes_mounts_and_enables_quotas_then_is_idempotent(settings, btrfs_kernel, tmp_path):
    drv = BtrfsDriver(settings)
    drv.setup_host(settings=settings)
    image, vols = str(tmp_path / "disk.btrfs"), str(tmp_path / "volumes")
    assert btrfs_kernel.commands == [
        ["mkfs.btrfs", "-q", image + ".new"],
        ["mount", "-t", "btrfs", "-o", "loop", image, vols],
        ["btrfs", "quota", "enable", vols],
    ]
    assert (tmp_path / "disk.btrfs").stat().st_size == 2**30
    assert (tmp_path / "disk.btrfs").stat().st_blocks == 0  # sparse
    btrfs_kernel.commands.clear()
    drv.setup_host(settings=settings)
    assert btrfs_kernel.commands == [["btrfs", "quota", "enable", vols]]


def test_hook_setup_host_uses_a_volumes_dir_already_on_btrfs(settings, btrfs_kernel, tmp_path):
    btrfs_kernel.add_mount(str(tmp_path), "btrfs", "/dev/sdb1")
    BtrfsDriver(settings).setup_host(settings=settings)
    assert btrfs_kernel.commands == [["btrfs", "quota", "enable", str(tmp_path / "volumes")]]
    assert not (tmp_path / "disk.btrfs").exists()


def test_failed_mkfs_leaves_no_image(settings, btrfs_kernel, tmp_path):
    btrfs_kernel.fail[("mkfs.btrfs",)] = "ERROR: 'disk.btrfs' is too small"
    with pytest.raises(DriverError, match="btrfs: cannot make btrfs image .* is too small"):
        BtrfsDriver(settings).setup_host(settings=settings)
    assert not (tmp_path / "disk.btrfs").exists() and not (tmp_path / "disk.btrfs.new").exists()


def test_setup_host_replaces_a_half_made_image_left_by_a_killed_server(settings, btrfs_kernel, tmp_path):
    (tmp_path / "disk.btrfs.new").write_bytes(b"partial")
    BtrfsDriver(settings).setup_host(settings=settings)
    assert (tmp_path / "disk.btrfs").stat().st_size == 2**30
    assert not (tmp_path / "disk.btrfs.new").exists()


def test_hook_teardown_host_unmounts_detaches_and_removes_the_image(driver, settings, btrfs_kernel, tmp_path):
    image = str(tmp_path / "disk.btrfs")
    btrfs_kernel.loops["/dev/loop9"] = image  # a leftover attachment from a crash
    driver.teardown_host(settings=settings)
    assert btrfs_kernel.commands == [["umount", str(tmp_path / "volumes")],
                                     ["losetup", "-d", "/dev/loop9"]]
    assert btrfs_kernel.loops == {}
    assert not (tmp_path / "disk.btrfs").exists() and not (tmp_path / "volumes").exists()
    btrfs_kernel.commands.clear()
    driver.teardown_host(settings=settings)
    assert btrfs_kernel.commands == []


def test_hook_teardown_host_leaves_an_operators_btrfs_alone(settings, btrfs_kernel, tmp_path):
    (tmp_path / "volumes").mkdir()
    btrfs_kernel.add_mount(str(tmp_path / "volumes"), "btrfs", "/dev/sdb1")
    BtrfsDriver(settings).teardown_host(settings=settings)
    assert btrfs_kernel.commands == [] and (tmp_path / "volumes").is_dir()


# ---- containers

def test_hook_setup_disk_creates_a_subvolume_named_after_the_id(driver, btrfs_kernel, new_container, settings, tmp_path):
    c = new_container(settings.depot)
    record = driver.setup_disk(container=c, settings=settings)
    path = str(tmp_path / "volumes" / c.id)
    assert record == {"subvolume": path, "qgroup": "0/256"}
    assert btrfs_kernel.commands == [["btrfs", "subvolume", "create", path],
                                     ["btrfs", "inspect-internal", "rootid", path]]


def test_hook_limit_disk_sets_the_referenced_limit_in_bytes(driver, btrfs_kernel, container):
    fields = driver.limit_disk(container=container, limits={"byte_limit": 2 * 2**20 + 1})
    assert btrfs_kernel.commands_named("btrfs", "qgroup", "limit") == [
        ["btrfs", "qgroup", "limit", str(2 * 2**20 + 1024), subvolume(container)]]
    assert fields["byte_limit"] == 2 * 2**20 + 1024 and fields["block_limit"] == 2049
    assert fields["byte_soft"] == fields["inode_limit"] == fields["inode_soft"] == 0


@pytest.mark.parametrize("alias", ["block_limit", "block", "block_hard"])
def test_hook_limit_disk_block_aliases_are_1k_blocks(driver, btrfs_kernel, container, alias):
    assert driver.limit_disk(container=container, limits={alias: 12345})["block_limit"] == 12345
    assert btrfs_kernel.commands_named("btrfs", "qgroup", "limit")[0][3] == str(12345 * 1024)


def test_hook_limit_disk_zero_removes_the_limit(driver, btrfs_kernel, container):
    driver.limit_disk(container=container, limits={"byte_limit": 2**20})
    assert driver.limit_disk(container=container, limits={"byte_limit": 0})["byte_limit"] == 0
    assert btrfs_kernel.commands_named("btrfs", "qgroup", "limit")[-1][3] == "none"


def test_hook_limit_disk_without_fields_reads_back_the_current_limit(driver, container):
    driver.limit_disk(container=container, limits={"block_limit": 7})
    assert driver.limit_disk(container=container, limits={})["block_limit"] == 7


@pytest.mark.parametrize("request_, message", [
    ({"inode_limit": 100}, "^btrfs qgroups cannot limit inodes$"),
    ({"inode_soft": 1}, "^btrfs qgroups cannot limit inodes$"),
    ({"byte_soft": 4096}, "^btrfs qgroups have no soft limit"),
    ({"byte_limit": 2**64 - 1}, "byte_limit 18446744073709551615 is too large"),
])
def test_hook_limit_disk_refuses_what_qgroups_cannot_do_and_changes_nothing(driver, btrfs_kernel, container, request_, message):
    driver.limit_disk(container=container, limits={"block_limit": 5})
    btrfs_kernel.commands.clear()
    with pytest.raises(WardenError, match=message):
        driver.limit_disk(container=container, limits=request_)
    assert btrfs_kernel.commands_named("btrfs", "qgroup", "limit") == []
    assert driver.limit_disk(container=container, limits={})["block_limit"] == 5


def test_hook_limit_disk_accepts_zero_inode_and_soft_limits(driver, container):
    fields = driver.limit_disk(container=container, limits={"inode": 0, "block_soft": 0, "byte": 4096})
    assert fields["block_limit"] == 4


def test_hook_info_reads_referenced_bytes_after_a_sync(driver, btrfs_kernel, container):
    btrfs_kernel.btrfs.subvolumes[subvolume(container)].referenced = 1064960
    assert driver.info(container=container) == {"disk_stat": {"bytes_used": 1064960, "inodes_used": 3}}
    assert btrfs_kernel.commands == [["btrfs", "qgroup", "show", "-re", "--raw", "-f",
                                      subvolume(container), "--sync"]]


def test_hook_info_failure_says_failed_getting_disk_usage(driver, btrfs_kernel, container):
    btrfs_kernel.fail[("btrfs", "qgroup", "show")] = "ERROR: can't list qgroups: quotas not enabled"
    with pytest.raises(WardenError, match="^Failed getting disk usage: btrfs qgroup show .*not enabled"):
        driver.info(container=container)


def test_hook_teardown_disk_deletes_waits_and_destroys_the_qgroup(driver, btrfs_kernel, container, settings):
    path, vols = subvolume(container), str(driver.config.volumes)
    driver.teardown_disk(container=container, record=container.records["disk"])
    assert btrfs_kernel.commands == [
        ["btrfs", "subvolume", "delete", "--commit-after", path],
        ["btrfs", "subvolume", "sync", vols, "256"],
        ["btrfs", "qgroup", "destroy", "0/256", vols],
    ]
    assert btrfs_kernel.btrfs.subvolumes == {} and btrfs_kernel.btrfs.qgroups == set()
    driver.teardown_disk(container=container, record=container.records["disk"])  # harmless


def test_hook_teardown_disk_without_record_finds_the_subvolume_by_id(driver, btrfs_kernel, container):
    driver.teardown_disk(container=container, record=None)
    assert btrfs_kernel.btrfs.subvolumes == {} and btrfs_kernel.btrfs.qgroups == set()


def test_setup_disk_failing_halfway_is_undone_by_teardown(driver, btrfs_kernel, new_container, settings):
    c = new_container(settings.depot)
    btrfs_kernel.fail[("btrfs", "inspect-internal")] = "ERROR: not a btrfs filesystem"
    with pytest.raises(DriverError, match="read the subvolume id"):
        driver.setup_disk(container=c, settings=settings)
    del btrfs_kernel.fail[("btrfs", "inspect-internal")]
    driver.teardown_disk(container=c, record=None)
    assert btrfs_kernel.btrfs.subvolumes == {}


def test_hook_teardown_disk_refuses_while_an_overlay_uses_the_subvolume(driver, btrfs_kernel, container):
    path = subvolume(container)
    btrfs_kernel.add_mount(str(container.path / "rootfs"), "overlay", "overlay",
                           f"rw,lowerdir=/rootfs,upperdir={path}/upper,workdir={path}/work")
    with pytest.raises(DriverError, match="still used by the mount on .*rootfs: tear the rootfs down first"):
        driver.teardown_disk(container=container, record=container.records["disk"])
    assert btrfs_kernel.commands_named("btrfs", "subvolume", "delete") == []


def test_hook_recover_fails_when_the_subvolume_is_gone(driver, container, settings):
    driver.recover(container=container, settings=settings)
    driver.teardown_disk(container=container, record=container.records["disk"])
    with pytest.raises(DriverError, match="subvolume .* is missing"):
        driver.recover(container=container, settings=settings)


# ---- check_host

def test_check_host_names_a_kernel_without_btrfs(settings, btrfs_kernel):
    btrfs_kernel.filesystems = "nodev\tproc\n\text4\n"
    with pytest.raises(DriverUnavailable, match="kernel has no btrfs filesystem.*modprobe btrfs"):
        BtrfsDriver.check_host(settings)


def test_check_host_names_missing_btrfs_progs(settings, btrfs_kernel):
    btrfs_kernel.commands_on_path = {"mkfs.btrfs"}
    with pytest.raises(DriverUnavailable, match="btrfs-progs is not installed: no btrfs on PATH"):
        BtrfsDriver.check_host(settings)
