"""The SetquotaDriver's hooks against a recording fake of kernel.py: the setquota command
lines it sends for every alias of Warden's quota_spec (facts §12.9, 1 KiB blocks), what it
reads back, and the start-up check."""

import pytest

from warden_framework.config import settings_from_dict
from warden_framework.errors import DriverError, DriverUnavailable, WardenError
from warden_quota_disk.setquota_driver import SetquotaDriver

UID = 10007


@pytest.fixture
def settings(tmp_path):
    (tmp_path / "depot").mkdir()
    return settings_from_dict({"server": {"container_depot_path": str(tmp_path / "depot")}})


@pytest.fixture
def driver(settings, quota_kernel):
    SetquotaDriver.check_host(settings)
    return SetquotaDriver(settings)


@pytest.fixture
def container(driver, quota_kernel, new_container, settings):
    c = new_container(settings.depot, uid=UID)
    c.records["disk"] = driver.setup_disk(container=c, settings=settings)
    quota_kernel.commands.clear()
    return c


def setquota(quota_kernel, *numbers):
    return ["setquota", "-u", str(UID), *map(str, numbers), quota_kernel.mount_point]


def test_hook_setup_disk_resets_the_uid_to_unlimited(driver, quota_kernel, new_container, settings):
    quota_kernel.quota(UID).block_hard = 99  # left by an earlier owner of the uid
    c = new_container(settings.depot, uid=UID)
    record = driver.setup_disk(container=c, settings=settings)
    assert quota_kernel.commands == [setquota(quota_kernel, 0, 0, 0, 0)]
    assert record == {"mount_point": quota_kernel.mount_point, "uid": UID}
    assert quota_kernel.quota(UID).block_hard == 0


# Each quota_spec example with 1 KiB blocks: request -> (bsoft, bhard, isoft, ihard) sent.
SPEC_CASES = {
    "byte_soft 4000": ({"byte_soft": 4000}, (4, 0, 0, 0)),
    "block_soft 1": ({"block_soft": 1}, (1, 0, 0, 0)),
    "block_soft wins over byte_soft": ({"byte_soft": 4000, "block_soft": 1}, (1, 0, 0, 0)),
    "byte_limit 4000": ({"byte_limit": 4000}, (0, 4, 0, 0)),
    "byte 4000": ({"byte": 4000}, (0, 4, 0, 0)),
    "byte_hard 4000": ({"byte_hard": 4000}, (0, 4, 0, 0)),
    "block_limit 1": ({"block_limit": 1}, (0, 1, 0, 0)),
    "block 1": ({"block": 1}, (0, 1, 0, 0)),
    "block_hard 1": ({"block_hard": 1}, (0, 1, 0, 0)),
    "block_limit wins over byte_limit": ({"byte_limit": 4000, "block_limit": 1}, (0, 1, 0, 0)),
    "inode_soft 1024": ({"inode_soft": 1024}, (0, 0, 1024, 0)),
    "inode_limit 1024": ({"inode_limit": 1024}, (0, 0, 0, 1024)),
    "inode 1024": ({"inode": 1024}, (0, 0, 0, 1024)),
    "inode_hard 1024": ({"inode_hard": 1024}, (0, 0, 0, 1024)),
    "block_limit 12345 round-trips": ({"block_limit": 12345}, (0, 12345, 0, 0)),
    "2 MiB byte_limit": ({"byte_limit": 2 * 2**20}, (0, 2048, 0, 0)),
}


@pytest.mark.parametrize("request_, sent", SPEC_CASES.values(), ids=SPEC_CASES.keys())
def test_hook_limit_disk_sends_setquota_for_each_alias(driver, quota_kernel, container, request_, sent):
    fields = driver.limit_disk(container=container, limits=request_)
    assert quota_kernel.commands == [setquota(quota_kernel, *sent)]
    bsoft, bhard, isoft, ihard = sent
    assert fields == {
        "block_limit": bhard, "block": bhard, "block_soft": bsoft, "block_hard": bhard,
        "byte_limit": bhard * 1024, "byte": bhard * 1024, "byte_soft": bsoft * 1024,
        "byte_hard": bhard * 1024, "inode_limit": ihard, "inode": ihard,
        "inode_soft": isoft, "inode_hard": ihard,
    }


def test_hook_limit_disk_keeps_limits_not_in_the_request(driver, quota_kernel, container):
    driver.limit_disk(container=container, limits={"block_soft": 5, "block_hard": 6,
                                                   "inode_soft": 7, "inode_hard": 8})
    fields = driver.limit_disk(container=container, limits={"byte_limit": 10 * 1024})
    assert quota_kernel.commands[-1] == setquota(quota_kernel, 5, 10, 7, 8)
    assert (fields["block_soft"], fields["inode_soft"], fields["inode_hard"]) == (5, 7, 8)


def test_hook_limit_disk_with_no_field_reads_and_rewrites_the_same_limits(driver, quota_kernel, container):
    driver.limit_disk(container=container, limits={"block_limit": 3})
    assert driver.limit_disk(container=container, limits={})["block_limit"] == 3
    assert quota_kernel.commands[-1] == setquota(quota_kernel, 0, 3, 0, 0)  # Warden always calls it


def test_fresh_container_reads_block_limit_zero(driver, container):
    assert driver.limit_disk(container=container, limits={})["block_limit"] == 0


@pytest.mark.parametrize("request_", [{"byte_limit": 2**64 - 1}, {"inode": -1}, {"block": "x"}])
def test_hook_limit_disk_refuses_bad_values_without_touching_the_kernel(driver, quota_kernel, container, request_):
    driver.limit_disk(container=container, limits={"block_limit": 3})
    quota_kernel.commands.clear()
    with pytest.raises(WardenError, match="limit_disk: "):
        driver.limit_disk(container=container, limits=request_)
    assert quota_kernel.commands == [] and quota_kernel.quota(UID).block_hard == 3


def test_hook_limit_disk_reports_setquota_failure_and_keeps_the_old_quota(driver, quota_kernel, container):
    driver.limit_disk(container=container, limits={"block_limit": 3})
    quota_kernel.fail[("setquota",)] = "setquota: Cannot set quota: Numerical result out of range"
    with pytest.raises(WardenError, match="Failed setting disk quota: setquota -u .*out of range"):
        driver.limit_disk(container=container, limits={"block_limit": 2**50})
    assert quota_kernel.quota(UID).block_hard == 3


def test_hook_info_reports_bytes_and_inodes_of_the_uid(driver, quota_kernel, container):
    quota_kernel.quota(UID).space_used = 1048576 + 4096
    quota_kernel.quota(UID).inodes_used = 3
    assert driver.info(container=container) == {
        "disk_stat": {"bytes_used": 1048576 + 4096, "inodes_used": 3}}


def test_hook_info_failure_says_failed_getting_disk_usage(driver, quota_kernel, container):
    quota_kernel.quotas_on = False
    with pytest.raises(WardenError, match="^Failed getting disk usage: uid 10007 on .*No such process"):
        driver.info(container=container)


def test_hook_info_without_setup_disk_contributes_nothing(driver, new_container, settings):
    assert driver.info(container=new_container(settings.depot)) is None


def test_hook_teardown_disk_resets_the_uid_and_is_idempotent(driver, quota_kernel, container):
    driver.limit_disk(container=container, limits={"block_limit": 3, "inode": 4})
    driver.teardown_disk(container=container, record=container.records["disk"])
    driver.teardown_disk(container=container, record=None)  # after a setup that died
    assert quota_kernel.commands[-2:] == [setquota(quota_kernel, 0, 0, 0, 0)] * 2
    assert quota_kernel.quota(UID).block_hard == 0 and quota_kernel.quota(UID).inode_hard == 0


def test_hook_teardown_disk_failure_is_a_driver_error(driver, quota_kernel, container):
    quota_kernel.fail[("setquota",)] = "setquota: Mountpoint (or device) /x not found"
    with pytest.raises(DriverError, match="Failed setting disk quota"):
        driver.teardown_disk(container=container, record=container.records["disk"])


def test_setup_disk_failure_is_a_driver_error(driver, quota_kernel, new_container, settings):
    quota_kernel.fail[("setquota",)] = "setquota: Cannot set quota"
    with pytest.raises(DriverError, match="setquota -u 10007 0 0 0 0"):
        driver.setup_disk(container=new_container(settings.depot, uid=UID), settings=settings)


def test_hook_setup_host_turns_quotas_on_only_when_off(driver, quota_kernel, settings):
    driver.setup_host(settings=settings)
    assert quota_kernel.commands == []
    quota_kernel.quotas_on = False
    driver.setup_host(settings=settings)
    assert quota_kernel.commands == [["quotaon", "-u", quota_kernel.mount_point]]


def test_hook_setup_host_names_the_fix_when_quotaon_fails(driver, quota_kernel, settings):
    quota_kernel.quotas_on = False
    quota_kernel.fail[("quotaon",)] = "quotaon: cannot find aquota.user"
    with pytest.raises(DriverError, match="quotacheck -cum"):
        driver.setup_host(settings=settings)


def test_quota_disabled_makes_every_hook_a_no_op(quota_kernel, tmp_path, new_container):
    settings = settings_from_dict({"server": {"container_depot_path": str(tmp_path)},
                                   "quota": {"disk_quota_enabled": False}})
    quota_kernel.symbols.clear()
    SetquotaDriver.check_host(settings)
    driver = SetquotaDriver(settings)
    c = new_container(tmp_path)
    c.records["disk"] = driver.setup_disk(container=c, settings=settings)
    driver.teardown_disk(container=c, record=c.records["disk"])
    assert driver.info(container=c) is None and quota_kernel.commands == []


# ---- check_host

def test_check_host_passes_with_quotas_on_a_usrquota_mount(settings, quota_kernel):
    SetquotaDriver.check_host(settings)


def test_check_host_passes_when_quotas_are_off_but_can_be_turned_on(settings, quota_kernel):
    quota_kernel.quotas_on = False
    quota_kernel.symbols.clear()
    quota_kernel.modules.add("quota_v2")
    SetquotaDriver.check_host(settings)


def test_check_host_names_the_missing_kernel_format(settings, quota_kernel):
    quota_kernel.quotas_on = False
    quota_kernel.symbols.clear()
    with pytest.raises(DriverUnavailable, match="kernel 6.99-test has no vfsv0/vfsv1 quota "
                                                "format \\(needs CONFIG_QFMT_V2, module quota_v2\\)"):
        SetquotaDriver.check_host(settings)


def test_check_host_names_a_mount_without_usrquota(settings, quota_kernel):
    quota_kernel.mounts[-1] = quota_kernel.mounts[-1].replace(",usrquota", "")
    with pytest.raises(DriverUnavailable, match="ext4 /dev/loop7 at .* is not mounted with "
                                                "usrquota or usrjquota \\(mount -o remount,usrquota"):
        SetquotaDriver.check_host(settings)


def test_check_host_on_this_host_refuses_or_passes_with_reason(tmp_path):
    """The real kernel: this VM lacks CONFIG_QFMT_V2 and / has no usrquota (facts §13.2)."""
    settings = settings_from_dict({"server": {"container_depot_path": str(tmp_path / "depot")}})
    try:
        SetquotaDriver.check_host(settings)
    except DriverUnavailable as exc:
        assert "user quotas cannot work for the depot" in str(exc)
        assert "usrquota" in str(exc) or "quota format" in str(exc)
