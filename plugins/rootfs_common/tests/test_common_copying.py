"""copying: rsync-like CopyIn/CopyOut with a plain directory standing for the container root."""

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from warden_rootfs_common.copying import CopyError, copy_in, copy_out

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")

UID = 10000


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    for d in ("tmp", "home/vcap", "etc"):
        (r / d).mkdir(parents=True)
    os.chmod(r / "tmp", 0o1777)
    os.chown(r / "home" / "vcap", UID, UID)
    return r


@pytest.fixture
def sentinel_root(tmp_path: Path) -> Path:
    """Warden's file-transfer fixture: a file, a symlink and a hard link to it."""
    d = tmp_path / "host" / "sentinel_root"
    d.mkdir(parents=True)
    (d / "sentinel").write_text("testing123")
    os.chmod(d / "sentinel", 0o755)
    (d / "sentinel_link").symlink_to(d / "sentinel")
    os.link(d / "sentinel", d / "sentinel_hardlink")
    (d / "sub").mkdir(mode=0o750)
    os.chmod(d / "sub", 0o750)
    (d / "sub" / "deep").write_text("deep")
    return d


def owner(p: Path) -> tuple[int, int]:
    st = p.lstat()
    return st.st_uid, st.st_gid


def test_copy_in_dir_without_slash_lands_inside_destination(root: Path,
                                                           sentinel_root: Path) -> None:
    copy_in(root, str(sentinel_root), "/tmp", UID, UID)
    got = root / "tmp" / "sentinel_root"
    assert (got / "sentinel").read_text() == "testing123"
    assert stat.S_IMODE((got / "sentinel").stat().st_mode) == 0o755
    assert stat.S_IMODE((got / "sub").stat().st_mode) == 0o750
    assert (got / "sub" / "deep").read_text() == "deep"
    assert os.readlink(got / "sentinel_link") == str(sentinel_root / "sentinel")
    assert (got / "sentinel_hardlink").stat().st_ino != (got / "sentinel").stat().st_ino
    assert (got / "sentinel_hardlink").read_text() == "testing123"
    for p in (got, got / "sentinel", got / "sentinel_link", got / "sub" / "deep"):
        assert owner(p) == (UID, UID), p
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777


def test_copy_in_trailing_slash_copies_contents_into_a_new_dir(root: Path,
                                                              sentinel_root: Path) -> None:
    copy_in(root, f"{sentinel_root}/", "/tmp/new", UID, UID)
    assert (root / "tmp" / "new" / "sentinel").read_text() == "testing123"
    assert owner(root / "tmp" / "new") == (UID, UID)


def test_copy_in_file_to_new_name_existing_dir_and_slash(root: Path,
                                                        sentinel_root: Path) -> None:
    src = str(sentinel_root / "sentinel")
    copy_in(root, src, "/tmp/renamed", UID, UID)
    copy_in(root, src, "/home/vcap", UID, UID)
    copy_in(root, src, "/tmp/made/", UID, UID)
    assert (root / "tmp" / "renamed").read_text() == "testing123"
    assert (root / "home" / "vcap" / "sentinel").read_text() == "testing123"
    assert (root / "tmp" / "made" / "sentinel").read_text() == "testing123"


def test_copy_in_writes_as_vcap_so_system_directories_refuse_it(
        root: Path, sentinel_root: Path) -> None:
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    with pytest.raises(CopyError, match="^copy_in: /etc/sentinel: Permission denied$"):
        copy_in(root, str(sentinel_root / "sentinel"), "/etc", UID, UID)
    with pytest.raises(CopyError, match="^copy_in: /etc/passwd: Permission denied$"):
        copy_in(root, str(sentinel_root / "sentinel"), "/etc/passwd", UID, UID)
    assert sorted(os.listdir(root / "etc")) == ["passwd"]
    assert (root / "etc" / "passwd").read_text().startswith("root:")


def test_copy_in_drops_set_id_bits(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "suid"
    src.write_text("#!/bin/sh\n")
    os.chmod(src, 0o6755)
    copy_in(root, str(src), "/tmp/suid", UID, UID)
    got = root / "tmp" / "suid"
    assert stat.S_IMODE(got.stat().st_mode) == 0o755 and owner(got) == (UID, UID)


def test_copy_in_reads_a_source_only_root_may_read(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "secret"
    src.write_text("for the container")
    os.chmod(src, 0o600)
    copy_in(root, str(src), "/tmp/secret", UID, UID)
    assert (root / "tmp" / "secret").read_text() == "for the container"


def test_copy_in_overwrites_a_file_and_relative_paths_are_under_home(
        root: Path, sentinel_root: Path) -> None:
    (root / "home" / "vcap" / "sentinel").write_text("old")
    copy_in(root, str(sentinel_root / "sentinel"), "sentinel", UID, UID)
    assert (root / "home" / "vcap" / "sentinel").read_text() == "testing123"


def test_copy_in_missing_source_names_it(root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(CopyError, match=f"^copy_in: {missing}: No such file or directory$"):
        copy_in(root, str(missing), "/tmp", UID, UID)


def test_copy_in_missing_destination_parent_names_it(root: Path, sentinel_root: Path) -> None:
    with pytest.raises(CopyError, match="^copy_in: /no/such: No such file or directory$"):
        copy_in(root, str(sentinel_root), "/no/such", UID, UID)


def test_copy_in_through_container_symlink_stays_in_the_container(
        root: Path, sentinel_root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (root / "tmp" / "escape").symlink_to(victim)      # absolute host path
    (root / "tmp" / "dotdot").symlink_to("../../../../../../../../" + str(victim))
    with pytest.raises(CopyError, match="^copy_in: /tmp/escape: "):  # dangling in the root
        copy_in(root, f"{sentinel_root}/", "/tmp/escape", UID, UID)
    inside = root / str(victim).lstrip("/")
    inside.mkdir(parents=True)
    os.chown(inside, UID, UID)
    copy_in(root, f"{sentinel_root}/", "/tmp/escape", UID, UID)
    copy_in(root, str(sentinel_root), "/tmp/dotdot/", UID, UID)
    assert list(victim.iterdir()) == []
    assert (inside / "sentinel").read_text() == "testing123"
    assert (inside / "sentinel_root" / "sentinel").read_text() == "testing123"


def test_copy_in_refuses_to_replace_a_non_empty_directory(root: Path,
                                                          sentinel_root: Path) -> None:
    (root / "tmp" / "sentinel" / "inner").mkdir(parents=True)
    os.chown(root / "tmp" / "sentinel", UID, UID)
    with pytest.raises(CopyError, match="^copy_in: /tmp/sentinel: Directory not empty$"):
        copy_in(root, str(sentinel_root / "sentinel"), "/tmp", UID, UID)
    (root / "tmp" / "sentinel" / "inner").rmdir()
    copy_in(root, str(sentinel_root / "sentinel"), "/tmp", UID, UID)
    assert (root / "tmp" / "sentinel").read_text() == "testing123"


def test_copy_in_skips_fifos(root: Path, sentinel_root: Path) -> None:
    os.mkfifo(sentinel_root / "fifo")
    copy_in(root, str(sentinel_root), "/tmp", UID, UID)
    assert not (root / "tmp" / "sentinel_root" / "fifo").exists()
    assert (root / "tmp" / "sentinel_root" / "sentinel").exists()


@pytest.fixture
def in_container(root: Path) -> Path:
    """/tmp/sentinel_root inside the root, owned by vcap, with a set-uid file."""
    d = root / "tmp" / "sentinel_root"
    (d / "sub").mkdir(parents=True)
    (d / "sentinel").write_text("testing123")
    os.chmod(d / "sentinel", 0o755)
    (d / "suid").write_text("x")
    (d / "sentinel_link").symlink_to("/tmp/sentinel_root/sentinel")
    for p in (d, d / "sub", d / "sentinel", d / "suid"):
        os.chown(p, UID, UID)
    os.chmod(d / "suid", 0o4755)
    return d


def test_copy_out_is_owned_by_root_and_keeps_modes(root: Path, in_container: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    copy_out(root, "/tmp/sentinel_root", str(out))
    got = out / "sentinel_root"
    assert (got / "sentinel").read_text() == "testing123"
    assert (got / "sentinel").stat().st_mode == 0o100755
    assert owner(got / "sentinel") == (0, 0)
    assert owner(got) == (0, 0)
    assert os.readlink(got / "sentinel_link") == "/tmp/sentinel_root/sentinel"
    assert stat.S_IMODE((got / "suid").stat().st_mode) == 0o755  # set-uid dropped


def test_copy_out_with_owner_chowns_the_whole_destination(root: Path, in_container: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    copy_out(root, "/tmp/sentinel_root/", str(out), owner="nobody:nogroup")
    ids = (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    for p in (out, out / "sentinel", out / "sub", out / "sentinel_link"):
        assert owner(p) == ids, p


def test_copy_out_with_unknown_owner_fails_before_copying(root: Path, in_container: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(CopyError, match="invalid owner 'no-such-user-x:root'"):
        copy_out(root, "/tmp/sentinel_root", str(out), owner="no-such-user-x:root")
    assert not out.exists()


def test_copy_out_symlink_escape_reads_only_the_container(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "shadow").write_text("host secret")
    (root / "etc" / "shadow").write_text("container shadow")
    (root / "tmp" / "etc").symlink_to("/etc")           # resolves to the container's /etc
    (root / "tmp" / "sec").symlink_to(secret)             # host path: absent in the container
    out = tmp_path / "out"
    out.mkdir()
    copy_out(root, "/tmp/etc/", str(out / "a"))
    assert (out / "a" / "shadow").read_text() == "container shadow"
    with pytest.raises(CopyError, match="^copy_out: /tmp/sec/: No such file or directory$"):
        copy_out(root, "/tmp/sec/", str(out / "b"))
    copy_out(root, "/../../../../../../../..", str(out / "c"))  # ".." stops at the root
    assert (out / "c" / "etc" / "shadow").read_text() == "container shadow"
    assert "host secret" not in "".join(
        p.read_text() for p in out.rglob("*") if p.is_file() and not p.is_symlink())


def test_copy_out_replaces_a_host_symlink_in_the_way_instead_of_following_it(
        root: Path, in_container: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "out"
    (out / "sentinel_root").mkdir(parents=True)
    (out / "sentinel_root" / "sub").symlink_to(victim)
    (out / "sentinel_root" / "sentinel").symlink_to(victim / "file")
    (in_container / "sub" / "f").write_text("from container")
    copy_out(root, "/tmp/sentinel_root", str(out))
    assert list(victim.iterdir()) == []
    assert (out / "sentinel_root" / "sub" / "f").read_text() == "from container"
    assert not (out / "sentinel_root" / "sentinel").is_symlink()
