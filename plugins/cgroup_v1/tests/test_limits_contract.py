"""The framework's limits contract, run against the cgroup v1 driver on the real kernel."""

from warden_cgroup_v1.driver import CgroupV1Driver
from warden_framework.testing.limits_contract import LimitsContract


class TestCgroupV1LimitsContract(LimitsContract):
    driver_class = CgroupV1Driver
