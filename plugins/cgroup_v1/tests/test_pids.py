"""The pids controller module on a plain directory standing in for a pids cgroup."""

import pytest

from warden_cgroup_v1 import pids
from warden_cgroup_v1.errors import CgroupError


@pytest.fixture
def group(tmp_path):
    (tmp_path / pids.PIDS_MAX).write_text("max\n")
    (tmp_path / pids.PIDS_CURRENT).write_text("3\n")
    return tmp_path


@pytest.mark.parametrize("limit, written", [(64, "64"), (0, "max"), (None, "max")])
def test_set_max_writes_the_limit_or_max(group, limit, written):
    pids.set_max(group, limit)
    assert (group / pids.PIDS_MAX).read_text() == written


def test_pid_stat_reports_current_and_limit_zero_for_none(group):
    assert pids.pid_stat(group) == {"current": 3, "limit": 0}
    pids.set_max(group, 1024)
    assert pids.pid_stat(group) == {"current": 3, "limit": 1024}


def test_set_max_on_a_missing_group_names_the_problem(tmp_path):
    with pytest.raises(CgroupError, match="Failed setting pids limit"):
        pids.set_max(tmp_path / "gone", 5)
