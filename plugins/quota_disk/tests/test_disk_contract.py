"""The framework's disk contract, run against both drivers of this plugin on the real kernel.

btrfs brings its own filesystem (a sparse image beside the depot, loop-mounted by
setup_host), so any depot will do. setquota needs the depot on a filesystem mounted with
usrquota on a kernel with the vfs quota format; this VM has neither, so it skips with its
check_host message. WARDEN_TEST_QUOTA_DEPOT names a directory on such a filesystem (the qemu
guest of run-guest.sh, or a host that has one) to run it there.
"""

import os
from pathlib import Path

import pytest
from warden_quota_disk import kernel, volumes
from warden_quota_disk.btrfs_driver import BtrfsDriver
from warden_quota_disk.setquota_driver import SetquotaDriver

from warden_framework.testing.disk_contract import DiskContract

QUOTA_DEPOT = "WARDEN_TEST_QUOTA_DEPOT"


class TestBtrfsDiskContract(DiskContract):
    driver_class = BtrfsDriver

    def left_behind(self, settings, container, record):
        """Also the subvolume and its qgroup as btrfs lists them."""
        left = super().left_behind(settings, container, record)
        cfg = volumes.config_from(settings)
        if record and os.path.ismount(cfg.volumes):
            listing = kernel.run(["btrfs", "subvolume", "list", str(cfg.volumes)]).split()
            qgroups = [line.split()[0] for line in
                       kernel.run(["btrfs", "qgroup", "show", "--raw", str(cfg.volumes)]).splitlines()[2:]]
            left += [f"subvolume {container.id} in btrfs's list"] if container.id in listing else []
            left += [f"qgroup {record['qgroup']}"] if record["qgroup"] in qgroups else []
        return left


class TestSetquotaDiskContract(DiskContract):
    driver_class = SetquotaDriver

    @pytest.fixture
    def depot(self, tmp_path):
        where = os.environ.get(QUOTA_DEPOT)
        return Path(where) / tmp_path.name if where else tmp_path / "depot"

    def left_behind(self, settings, container, record):
        """Also the uid's quota entry: teardown resets it to unlimited."""
        left = super().left_behind(settings, container, record)
        if record:
            quota = kernel.get_user_quota(record["mount_point"], record["uid"])
            limits = (quota.block_soft, quota.block_hard, quota.inode_soft, quota.inode_hard)
            left += [f"quota {limits} of uid {record['uid']}"] if any(limits) else []
        return left
