"""The framework's limits contract, run against the cgroup v2 driver on the real kernel (a
pure cgroup v2 host: in CI, the qemu guest of warden_framework.testing.guest)."""

from warden_cgroup_v2.driver import CgroupV2Driver
from warden_framework.testing.limits_contract import LimitsContract


class TestCgroupV2LimitsContract(LimitsContract):
    driver_class = CgroupV2Driver
