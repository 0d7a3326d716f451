"""The BtrfsDriver on the real kernel: a loop-mounted image with qgroups, a subvolume per
container, writes as the container's uid stopped with EDQUOT, usage read back, and nothing
left behind (mount, loop device, subvolume, qgroup). Skips, saying why, without root or btrfs."""

import os
import subprocess
from pathlib import Path

import pytest

from warden_framework.errors import DriverError, WardenError
from warden_quota_disk import kernel, volumes

pytestmark = pytest.mark.integration

UID = 10000 + os.getpid() % 1000
MiB = 2**20


@pytest.fixture
def container(btrfs_host, btrfs_settings, new_container):
    """A container with its subvolume and, as the rootfs driver will make it, an upper dir
    inside owned by the container's uid."""
    c = new_container(btrfs_settings.depot, uid=UID)
    c.records["disk"] = btrfs_host.setup_disk(container=c, settings=btrfs_settings)
    upper = Path(c.records["disk"]["subvolume"]) / "upper"
    upper.mkdir()
    os.chown(upper, UID, UID)
    yield c
    btrfs_host.teardown_disk(container=c, record=c.records.get("disk"))


def upper(c) -> Path:
    return Path(c.records["disk"]["subvolume"]) / "upper"


def write_as_uid(c, name: str, mib: int) -> subprocess.CompletedProcess:
    """dd as the container's uid. The cwd is entered while still root, so the test's private
    tmp dirs above need not be searchable by that uid."""
    return subprocess.run(["dd", "if=/dev/zero", f"of={name}", "bs=1M", f"count={mib}", "conv=fsync"],
                          cwd=upper(c), user=UID, group=UID, extra_groups=[],
                          capture_output=True, text=True, check=False)


def qgroups(driver) -> str:
    return kernel.run(["btrfs", "qgroup", "show", "--raw", str(driver.config.volumes)])


def test_hook_setup_host_mounts_the_image_with_quotas_and_is_idempotent(btrfs_host, btrfs_settings):
    btrfs_host.setup_host(settings=btrfs_settings)
    ours = [m for m in volumes.current_mounts() if volumes.is_our_image(m, btrfs_host.config)]
    assert len(ours) == 1 and ours[0].fstype == "btrfs"
    assert len(kernel.loop_devices_of(str(btrfs_host.config.image))) == 1
    assert "0/5" in qgroups(btrfs_host)  # quotas are enabled


def test_hook_setup_disk_makes_a_subvolume_with_its_qgroup(btrfs_host, container):
    record = container.records["disk"]
    assert Path(record["subvolume"]).is_dir()
    assert int(record["qgroup"].split("/")[1]) == volumes.subvolume_id(Path(record["subvolume"]))
    assert record["qgroup"] in qgroups(btrfs_host)


def test_hook_limit_disk_write_past_byte_limit_fails_with_edquot(btrfs_host, container):
    fields = btrfs_host.limit_disk(container=container, limits={"byte_limit": 2 * MiB})
    assert fields["byte_limit"] == 2 * MiB and fields["block_limit"] == 2048
    assert write_as_uid(container, "small", 1).returncode == 0
    big = write_as_uid(container, "big", 4)
    assert big.returncode == 1 and "Disk quota exceeded" in big.stderr


def test_hook_limit_disk_block_limit_round_trips(btrfs_host, container):
    assert btrfs_host.limit_disk(container=container, limits={"block_limit": 12345})["block_limit"] == 12345
    assert btrfs_host.limit_disk(container=container, limits={})["block_limit"] == 12345


def test_hook_info_usage_grows_by_about_1mb_after_writing_1mb(btrfs_host, container):
    before = btrfs_host.info(container=container)["disk_stat"]
    assert write_as_uid(container, "one", 1).returncode == 0
    after = btrfs_host.info(container=container)["disk_stat"]
    assert abs(after["bytes_used"] - before["bytes_used"] - MiB) <= 32000  # Warden's spec
    assert after["inodes_used"] == before["inodes_used"] + 1


def test_limit_below_usage_keeps_the_data_and_refuses_more_writes(btrfs_host, container):
    assert write_as_uid(container, "data", 3).returncode == 0
    fields = btrfs_host.limit_disk(container=container, limits={"byte_limit": 1 * MiB})
    assert fields["byte_limit"] == MiB
    assert (upper(container) / "data").stat().st_size == 3 * MiB
    assert (upper(container) / "data").read_bytes() == bytes(3 * MiB)
    more = write_as_uid(container, "more", 1)
    assert more.returncode == 1 and "Disk quota exceeded" in more.stderr


def test_hook_limit_disk_refuses_inode_limits_and_keeps_the_qgroup(btrfs_host, container):
    btrfs_host.limit_disk(container=container, limits={"byte_limit": 3 * MiB})
    with pytest.raises(WardenError, match="^btrfs qgroups cannot limit inodes$"):
        btrfs_host.limit_disk(container=container, limits={"inode_limit": 1000, "byte_limit": MiB})
    assert btrfs_host.limit_disk(container=container, limits={})["byte_limit"] == 3 * MiB


def test_hook_teardown_disk_leaves_no_subvolume_and_no_qgroup(btrfs_host, container):
    path, qgroupid = Path(container.records["disk"]["subvolume"]), container.records["disk"]["qgroup"]
    write_as_uid(container, "f", 1)
    btrfs_host.teardown_disk(container=container, record=container.records["disk"])
    btrfs_host.teardown_disk(container=container, record=None)  # twice is harmless
    assert not path.exists()
    assert f"{qgroupid} " not in qgroups(btrfs_host)
    listing = kernel.run(["btrfs", "subvolume", "list", str(btrfs_host.config.volumes)])
    assert container.id not in listing


def test_hook_teardown_disk_refuses_while_an_overlay_uses_the_subvolume(btrfs_host, container, tmp_path):
    lower, target = tmp_path / "lower", tmp_path / "merged"
    lower.mkdir()
    target.mkdir()
    sub = Path(container.records["disk"]["subvolume"])
    (sub / "work").mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={sub / 'upper'},workdir={sub / 'work'}", str(target)],
                   check=True)
    try:
        with pytest.raises(DriverError, match="still used by the mount on .*merged"):
            btrfs_host.teardown_disk(container=container, record=container.records["disk"])
        assert sub.is_dir()
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_hook_recover_accepts_a_live_subvolume(btrfs_host, container, btrfs_settings):
    btrfs_host.recover(container=container, settings=btrfs_settings)
    assert Path(container.records["disk"]["subvolume"]).is_dir()


def test_hook_teardown_host_leaves_no_mount_loop_device_or_image(btrfs_settings):
    from warden_quota_disk.btrfs_driver import BtrfsDriver

    driver = BtrfsDriver(btrfs_settings)
    driver.setup_host(settings=btrfs_settings)
    driver.teardown_host(settings=btrfs_settings)
    driver.teardown_host(settings=btrfs_settings)
    cfg = driver.config
    assert not any(m.mount_point == str(cfg.volumes) for m in volumes.current_mounts())
    assert kernel.loop_devices_of(str(cfg.image)) == []
    assert not cfg.image.exists() and not cfg.volumes.exists()
