"""drivers: {limits: auto} picks cgroup_v2 on a unified host and cgroup_v1 elsewhere, from
what is mounted on the cgroup root (a mountinfo file written here as each kind of host has)."""

import logging

import pytest

from warden_framework.config import settings_from_dict
from warden_framework.drivers import auto
from warden_framework.errors import ConfigError

UNIFIED = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw\n"
HYBRID = ("35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
          "36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n"
          "37 35 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n")


def choose(tmp_path, text, root="/sys/fs/cgroup", subsystem="limits"):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(text)
    settings = settings_from_dict({"server": {"cgroup_root": root}})
    return auto.resolve(subsystem, "auto", settings, str(mountinfo))


def test_a_unified_host_gets_cgroup_v2_and_the_choice_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=auto.__name__):
        assert choose(tmp_path, UNIFIED) == "cgroup_v2"
    assert "auto chose cgroup_v2 (/sys/fs/cgroup is a cgroup2 mount)" in caplog.text


def test_a_hybrid_host_gets_cgroup_v1(tmp_path):
    assert choose(tmp_path, HYBRID) == "cgroup_v1"


def test_a_cgroup_root_that_names_the_unified_mount_gets_cgroup_v2(tmp_path):
    assert choose(tmp_path, HYBRID, root="/sys/fs/cgroup/unified") == "cgroup_v2"


def test_the_topmost_mount_decides(tmp_path):
    over = UNIFIED + "50 35 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
    assert choose(tmp_path, over) == "cgroup_v1"


def test_a_root_with_a_space_in_its_name_is_found(tmp_path):
    text = "40 24 0:30 / /srv/my\\040cgroups rw - cgroup2 cgroup2 rw\n"
    assert choose(tmp_path, text, root="/srv/my cgroups") == "cgroup_v2"


def test_no_mount_on_the_root_means_cgroup_v1(tmp_path):
    assert choose(tmp_path, "") == "cgroup_v1"


def test_a_named_driver_is_kept(tmp_path):
    settings = settings_from_dict({})
    assert auto.resolve("limits", "cgroup_v1", settings) == "cgroup_v1"


def test_auto_is_only_for_limits(tmp_path):
    with pytest.raises(ConfigError, match=r"^drivers.rootfs: 'auto' chooses only the limits"):
        choose(tmp_path, UNIFIED, subsystem="rootfs")


def test_the_default_config_says_auto():
    assert settings_from_dict({}).drivers.limits == "auto"
