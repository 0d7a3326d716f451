"""The core's rootfs contract, run against the tmpfs driver on the real kernel."""

import pytest

from warden_framework.errors import DriverUnavailable, WardenError
from warden_framework.testing.contract import RootfsContract
from warden_tmpfs_rootfs.driver import TmpfsRootfsDriver


class TestTmpfsRootfsContract(RootfsContract):
    @pytest.fixture
    def driver(self, rootfs_settings):
        return TmpfsRootfsDriver(rootfs_settings)

    def skip_reason(self, settings):
        try:
            TmpfsRootfsDriver.check_host(settings)
        except DriverUnavailable as exc:
            return str(exc)
        return None

    def upper_dir(self, container):
        return container.rootfs_dir  # the tmpfs is the writable layer, and the only one

    @pytest.mark.xfail(strict=True, raises=WardenError, reason=(
        "a tmpfs does not outlive its mount: once the host detached it (and no process holds "
        "it) the container's files are gone, so recover refuses (WardenError) and the server "
        "destroys the container; see test_tmpfs_driver.py::"
        "test_recover_refuses_a_root_the_host_lost"))
    def test_hook_recover_remounts_a_root_the_host_lost(self, driver, container, rootfs_settings):
        super().test_hook_recover_remounts_a_root_the_host_lost(driver, container, rootfs_settings)
