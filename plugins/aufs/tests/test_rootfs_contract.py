"""The framework's rootfs contract, run against the aufs driver.

TestAufsRootfsContract is the real thing; it skips, saying why, on a kernel without aufs (every
mainline kernel, this one included). TestAufsDriverOnOverlayStandIn runs the same suite with
the kernel seam's aufs mount translated into an overlay mount of the same upper and lower
branches, so everything above kernel.mount (layout, /etc files, copying, usage, teardown,
recovery) runs on this kernel; what only aufs itself can show (whiteout files, xino) is in
test_aufs_kernel.py.
"""

import re
from pathlib import Path

import pytest

from warden_aufs import kernel
from warden_aufs.driver import AufsDriver
from warden_framework.errors import DriverUnavailable
from warden_framework.testing.contract import RootfsContract

_BRANCHES = re.compile(rb"^br:(?P<upper>[^:=,]+)=rw:(?P<lower>[^:=,]+)=ro\+wh,xino=[^,]+$")


class TestAufsRootfsContract(RootfsContract):
    @pytest.fixture
    def driver(self, rootfs_settings):
        return AufsDriver(rootfs_settings)

    def skip_reason(self, settings):
        try:
            AufsDriver.check_host(settings)
        except DriverUnavailable as exc:
            return f"aufs: {exc}"
        return None


class TestAufsDriverOnOverlayStandIn(RootfsContract):
    @pytest.fixture
    def driver(self, rootfs_settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
        real_mount = kernel.mount
        work = tmp_path / "overlay-work"  # outside the container dir: the driver never sees it

        def aufs_as_overlay(source, target, fstype, flags, data):
            assert (source, fstype, flags) == ("none", "aufs", 0)
            branches = _BRANCHES.match(data)
            assert branches, data
            work.mkdir(exist_ok=True)  # a remount may reuse it: overlay empties it itself
            real_mount("overlay", target, "overlay", 0, b"lowerdir=%s,upperdir=%s,workdir=%s" % (
                branches["lower"], branches["upper"], bytes(work)))

        monkeypatch.setattr(kernel, "mount", aufs_as_overlay)
        return AufsDriver(rootfs_settings)

    def skip_reason(self, settings):
        if not kernel.has_filesystem("overlay"):
            return "the stand-in needs the kernel's overlay filesystem"
        return None
