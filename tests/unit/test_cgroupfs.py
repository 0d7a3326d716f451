"""What the cgroup drivers share (warden_framework.cgroupfs), on plain directories and files
standing in for groups and control files."""

import pytest

from warden_framework import cgroupfs
from warden_framework.cgroupfs import CgroupError, OpenStatFiles


@pytest.fixture
def group(tmp_path):
    (tmp_path / cgroupfs.PIDS_MAX).write_text("max\n")
    (tmp_path / cgroupfs.PIDS_CURRENT).write_text("3\n")
    return tmp_path


@pytest.mark.parametrize("limit, written", [(64, "64"), (0, "max"), (None, "max")])
def test_set_max_writes_the_limit_or_max(group, limit, written):
    cgroupfs.set_pids_max(group, limit)
    assert (group / cgroupfs.PIDS_MAX).read_text() == written


def test_pid_stat_reports_current_and_limit_zero_for_none(group):
    assert cgroupfs.pid_stat(group) == {"current": 3, "limit": 0}
    cgroupfs.set_pids_max(group, 1024)
    assert cgroupfs.pid_stat(group) == {"current": 3, "limit": 1024}


def test_set_max_on_a_missing_group_names_the_problem(tmp_path):
    with pytest.raises(CgroupError, match="Failed setting pids limit"):
        cgroupfs.set_pids_max(tmp_path / "gone", 5)


def test_open_stat_files_read_the_file_afresh_and_remember_a_missing_one(tmp_path):
    stat = tmp_path / "memory.stat"
    stat.write_text("rss 1\n")
    files = OpenStatFiles()
    assert files.read(stat) == "rss 1\n"
    stat.write_text("rss 22\n")  # same inode, new text: the open descriptor sees it
    assert files.read(stat) == "rss 22\n"
    assert files.read_if_present(tmp_path / "memory.swap.current") is None
    (tmp_path / "memory.swap.current").write_text("0\n")
    assert files.read_if_present(tmp_path / "memory.swap.current") is None  # remembered
    with pytest.raises(FileNotFoundError):
        files.read(tmp_path / "nothing")
    files.close()
    assert files.read(stat) == "rss 22\n"  # reopened after close


def test_write_control_never_creates_a_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        cgroupfs.write_control(tmp_path / "memory.max", "1")
    assert not (tmp_path / "memory.max").exists()


def test_make_and_remove_group_say_whether_they_acted(tmp_path):
    assert cgroupfs.make_group(tmp_path / "g") and not cgroupfs.make_group(tmp_path / "g")
    assert cgroupfs.remove_group(tmp_path / "g") and not cgroupfs.remove_group(tmp_path / "g")
