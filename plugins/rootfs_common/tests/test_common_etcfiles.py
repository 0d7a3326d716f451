"""etcfiles: the text builders, and the writers on a plain directory standing for the root."""

import os
import stat
from pathlib import Path

import pytest

from warden_rootfs_common import etcfiles

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def test_hostname_and_hosts_name_the_container() -> None:
    assert etcfiles.hostname_text("abc123") == "abc123\n"
    assert etcfiles.hosts_text("abc123", "10.254.0.2") == \
        "127.0.0.1 localhost\n10.254.0.2 abc123\n"


def test_resolv_conf_with_dns_servers_has_one_line_each() -> None:
    text = etcfiles.resolv_conf_text(["8.8.8.8", "8.8.4.4", "1.1.1.1"],
                                     "nameserver 127.0.0.1\n", "10.254.0.1")
    assert text == "nameserver 8.8.8.8\nnameserver 8.8.4.4\nnameserver 1.1.1.1\n"


def test_resolv_conf_with_loopback_host_resolver_points_at_host_ip() -> None:
    assert etcfiles.resolv_conf_text([], "nameserver 127.0.0.1\n", "10.254.0.1") == \
        "nameserver 10.254.0.1\n"


def test_resolv_conf_otherwise_copies_the_host_file() -> None:
    host = "search example.org\nnameserver 127.0.0.1\nnameserver 9.9.9.9\n"
    assert etcfiles.resolv_conf_text([], host, "10.254.0.1") == host


def test_with_user_appends_vcap() -> None:
    text, old = etcfiles.with_user("root:x:0:0:root:/root:/bin/bash\n", 10000, 10000)
    assert text == ("root:x:0:0:root:/root:/bin/bash\n"
                    "vcap:x:10000:10000::/home/vcap:/bin/bash\n")
    assert old is None


def test_with_user_renumbers_an_existing_vcap_and_keeps_its_fields() -> None:
    passwd = "root:x:0:0::/root:/bin/bash\nvcap:x:1001:1001:V:/home/vcap:/bin/sh\n"
    text, old = etcfiles.with_user(passwd, 10001, 10001)
    assert text.splitlines()[1] == "vcap:x:10001:10001:V:/home/vcap:/bin/sh"
    assert old == 1001


def test_with_group_appends_or_renumbers() -> None:
    assert etcfiles.with_group("root:x:0:\n", 10000) == ("root:x:0:\nvcap:x:10000:\n", None)
    assert etcfiles.with_group("vcap:x:1001:a,b\n", 10000) == ("vcap:x:10000:a,b\n", 1001)


def test_with_shadow_adds_a_locked_entry_once() -> None:
    once = etcfiles.with_shadow("root:*:19000:0:99999:7:::\n")
    assert once.splitlines()[1].startswith("vcap:!:")
    assert etcfiles.with_shadow(once) == once


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc" / "skel").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (r / "etc" / "group").write_text("root:x:0:\n")
    (r / "etc" / "skel" / ".bashrc").write_text("# bashrc\n")
    return r


@needs_root
def test_write_network_files(root: Path, tmp_path: Path) -> None:
    host_resolv = tmp_path / "host-resolv.conf"
    host_resolv.write_text("nameserver 127.0.0.1\n")
    etcfiles.write_network_files(root, "c1", "10.254.0.2", "10.254.0.1",
                                 host_resolv_conf=host_resolv)
    assert (root / "etc" / "hostname").read_text() == "c1\n"
    assert (root / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n10.254.0.2 c1\n"
    assert (root / "etc" / "resolv.conf").read_text() == "nameserver 10.254.0.1\n"
    assert stat.S_IMODE((root / "etc" / "hosts").stat().st_mode) == 0o644


@needs_root
def test_write_network_files_replaces_a_symlink_instead_of_following_it(
        root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "host-file"
    victim.write_text("host content\n")
    (root / "etc" / "resolv.conf").symlink_to(victim)  # absolute: the host's path
    (root / "etc" / "hosts").symlink_to("../../../../../../" + str(victim))
    host_resolv = tmp_path / "host-resolv.conf"
    host_resolv.write_text("nameserver 9.9.9.9\n")
    etcfiles.write_network_files(root, "c1", "10.254.0.2", "10.254.0.1", ["1.1.1.1"],
                                 host_resolv)
    assert victim.read_text() == "host content\n"
    assert not (root / "etc" / "resolv.conf").is_symlink()
    assert (root / "etc" / "resolv.conf").read_text() == "nameserver 1.1.1.1\n"
    assert not (root / "etc" / "hosts").is_symlink()


@needs_root
def test_write_network_files_makes_a_missing_etc(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    empty = tmp_path / "empty-resolv"
    empty.write_text("")
    etcfiles.write_network_files(bare, "c2", "10.0.0.2", "10.0.0.1", host_resolv_conf=empty)
    assert stat.S_IMODE((bare / "etc").stat().st_mode) == 0o755
    assert (bare / "etc" / "hostname").read_text() == "c2\n"


@needs_root
def test_add_container_user_creates_vcap_and_home(root: Path) -> None:
    user = etcfiles.add_container_user(root, 10000)
    assert user == etcfiles.ContainerUser(uid=10000, gid=10000)
    assert "vcap:x:10000:10000::/home/vcap:/bin/bash\n" in (root / "etc" / "passwd").read_text()
    assert (root / "etc" / "group").read_text().endswith("vcap:x:10000:\n")
    home = (root / "home" / "vcap").stat()
    assert (home.st_uid, home.st_gid) == (10000, 10000)
    bashrc = root / "home" / "vcap" / ".bashrc"
    assert bashrc.read_text() == "# bashrc\n"
    assert bashrc.stat().st_uid == 10000


@needs_root
def test_add_container_user_renumbers_vcap_and_reowns_its_files(root: Path) -> None:
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/bash\n"
                                         "vcap:x:1001:1001::/home/vcap:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\nvcap:x:1001:\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.chmod(root / "etc" / "shadow", 0o640)
    (root / "home" / "vcap").mkdir(parents=True)
    owned = root / "home" / "vcap" / "owned"
    owned.write_text("x")
    setuid = root / "opt-tool"
    setuid.write_text("#!/bin/sh\n")
    link = root / "home" / "vcap" / "link"
    link.symlink_to("/etc/passwd")
    for p in (root / "home" / "vcap", owned, setuid):
        os.chown(p, 1001, 1001)
    os.chown(link, 1001, 1001, follow_symlinks=False)
    os.chmod(setuid, 0o4755)
    other = root / "not-vcaps"
    other.write_text("y")

    user = etcfiles.add_container_user(root, 10001)

    assert user.renumbered_from == (1001, 1001)
    assert user.reowned == 4
    assert "vcap:x:10001:10001:" in (root / "etc" / "passwd").read_text()
    assert "vcap:x:10001:" in (root / "etc" / "group").read_text()
    assert "vcap:!:" in (root / "etc" / "shadow").read_text()
    assert stat.S_IMODE((root / "etc" / "shadow").stat().st_mode) == 0o640
    for p in (owned, setuid):
        assert (p.stat().st_uid, p.stat().st_gid) == (10001, 10001)
    assert link.lstat().st_uid == 10001
    assert stat.S_IMODE(setuid.stat().st_mode) == 0o4755
    assert other.stat().st_uid == 0
    assert (root / "etc" / "passwd").stat().st_uid == 0
