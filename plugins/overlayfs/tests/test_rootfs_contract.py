"""The framework's rootfs contract, run against the overlayfs driver on the real kernel."""

import pytest

from warden_framework.errors import DriverUnavailable
from warden_framework.testing.contract import RootfsContract
from warden_overlayfs.driver import OverlayfsDriver


class TestOverlayfsRootfsContract(RootfsContract):
    @pytest.fixture
    def driver(self, rootfs_settings):
        return OverlayfsDriver(rootfs_settings)

    def skip_reason(self, settings):
        try:
            OverlayfsDriver.check_host(settings)
        except DriverUnavailable as exc:
            return f"overlayfs: {exc}"
        return None
