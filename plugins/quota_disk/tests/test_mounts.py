"""Finding the mount that holds a path from mountinfo text (facts §12.9 mount_point_spec)."""

import os

import pytest

from warden_quota_disk.mounts import (
    existing_ancestor, mount_of, mounts_using, parse_mountinfo, unescape,
)

MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 7:0 / /srv/quota rw,relatime - ext4 /dev/loop0 rw,usrjquota=aquota.user,jqfmt=vfsv0
41 27 7:1 / /srv/quota/deeper rw - btrfs /dev/loop1 rw,subvolid=5
42 27 0:50 / /srv/quota rw - tmpfs tmpfs rw
43 27 0:51 / /srv/with\\040space rw - ext4 /dev/loop2 rw,usrquota
44 27 0:52 / /var/depot/x/rootfs rw - overlay overlay rw,lowerdir=/rootfs,upperdir=/vol/abc/upper,workdir=/vol/abc/work
"""


@pytest.fixture
def mounts():
    return parse_mountinfo(MOUNTINFO)


def test_mount_point_of_root_is_root(mounts):
    assert mount_of("/", mounts).mount_point == "/"


def test_nearest_mount_point_above_the_path(mounts):
    assert mount_of("/srv/quota/deeper/a/b", mounts).fstype == "btrfs"
    assert mount_of("/srv/quotas", mounts).mount_point == "/"


def test_topmost_of_stacked_mounts_wins(mounts):
    assert mount_of("/srv/quota/x", mounts).fstype == "tmpfs"


def test_escaped_mount_points_are_decoded(mounts):
    mount = mount_of("/srv/with space/depot", mounts)
    assert mount.mount_point == "/srv/with space" and mount.has_user_quota
    assert unescape("a\\011b\\134c") == "a\tb\\c"


def test_user_quota_options(mounts):
    by_point = {m.mount_point: m for m in mounts}
    assert mounts[1].has_user_quota  # usrjquota=aquota.user
    assert not by_point["/"].has_user_quota
    assert not by_point["/srv/quota/deeper"].has_user_quota


def test_mounts_using_finds_an_overlay_upper_dir_inside(mounts):
    assert [m.fstype for m in mounts_using("/vol/abc", mounts)] == ["overlay"]
    assert mounts_using("/vol/ab", mounts) == []
    assert [m.mount_point for m in mounts_using("/srv/quota", mounts)] == [
        "/srv/quota", "/srv/quota/deeper", "/srv/quota"]


def test_existing_ancestor_follows_symlinks(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert existing_ancestor(tmp_path / "link" / "not" / "yet") == os.path.realpath(tmp_path / "real")


def test_no_mount_raises_lookup_error():
    with pytest.raises(LookupError):
        mount_of("/x", parse_mountinfo("40 1 7:0 / /srv rw - ext4 /dev/loop0 rw\n"))
