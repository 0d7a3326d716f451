"""kernel.py's own behaviour where it needs no special host: command errors, the inode walk,
loop-device lookup, and quotactl_fd reporting quotas off on this host's root filesystem."""

import errno
import os

import pytest

from warden_quota_disk import kernel


def test_run_returns_stdout():
    assert kernel.run(["echo", "hi"]) == "hi\n"


def test_run_failure_carries_argv_and_stderr():
    with pytest.raises(kernel.CommandFailed, match="^sh -c echo oops >&2; exit 3: oops$") as info:
        kernel.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert info.value.returncode == 3 and info.value.stderr == "oops"


def test_run_of_a_missing_command_says_so():
    with pytest.raises(kernel.CommandFailed, match="command not found") as info:
        kernel.run(["no-such-command-quota-disk"])
    assert info.value.returncode == 127


def test_count_inodes_counts_hard_links_once_and_the_top_itself(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    os.link(tmp_path / "d" / "f", tmp_path / "g")
    os.symlink("d", tmp_path / "s")
    assert kernel.count_inodes(str(tmp_path)) == 4  # top, d, f (= g), s


def test_loop_devices_of_a_file_never_attached_is_empty(tmp_path):
    assert kernel.loop_devices_of(str(tmp_path / "never.img")) == []


def test_user_quota_of_a_filesystem_without_quotas_is_an_oserror(tmp_path):
    """This host's / has no usrquota: quotactl_fd answers ESRCH (quotas off)."""
    with pytest.raises(OSError) as info:
        kernel.get_user_quota(str(tmp_path), os.getuid())
    assert info.value.errno in (errno.ESRCH, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM)
