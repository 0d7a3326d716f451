"""layers, etcfiles, copying and usage on a real overlay mount."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from warden_overlayfs import kernel, layers
from warden_rootfs_common import etcfiles
from warden_rootfs_common.copying import CopyError, copy_out
from warden_rootfs_common.usage import upper_usage

DEFAULT_ROOTFS = Path(__file__).resolve().parents[3] / "build" / "rootfs"

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mount needs root")


def test_check_rootfs_missing_path_has_the_client_text(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(layers.RootfsNotFound, match=f"^rootfs {missing} not found$"):
        layers.check_rootfs(missing)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not found"):
        layers.check_rootfs(tmp_path / "file")


def test_check_rootfs_follows_symlinks(tmp_path: Path, lower: Path) -> None:
    (tmp_path / "alias").symlink_to(lower)
    assert layers.check_rootfs(tmp_path / "alias") == lower.resolve()


@pytest.mark.integration
@root_only
def test_create_layers_mounts_and_writes_land_in_upper(container_dir: Path,
                                                       lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    assert kernel.is_mounted(paths.rootfs)
    assert (paths.rootfs / "data" / "keep").read_text() == "lower keep\n"
    (paths.rootfs / "data" / "keep").write_text("changed\n")
    assert (paths.upper / "data" / "keep").read_text() == "changed\n"
    assert (lower / "data" / "keep").read_text() == "lower keep\n"


@pytest.mark.integration
@root_only
def test_delete_in_container_makes_a_whiteout(container_dir: Path, lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    (paths.rootfs / "data" / "doomed").unlink()
    whiteout = (paths.upper / "data" / "doomed").lstat()
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert (lower / "data" / "doomed").exists()


@pytest.mark.integration
@root_only
def test_remove_layers_leaves_nothing_and_is_idempotent(container_dir: Path,
                                                        lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    (paths.rootfs / "tmp" / "x").write_text("x")
    busy = os.open(paths.rootfs / "tmp" / "x", os.O_RDONLY)
    try:
        layers.remove_layers(container_dir)
    finally:
        os.close(busy)
    assert not kernel.mounts_under(container_dir)
    assert list(container_dir.iterdir()) == []
    layers.remove_layers(container_dir)
    assert (lower / "data" / "keep").read_text() == "lower keep\n"


@pytest.mark.integration
@root_only
def test_remove_layers_on_a_half_created_dir(container_dir: Path) -> None:
    (container_dir / "upper" / "etc").mkdir(parents=True)
    (container_dir / "rootfs").mkdir()
    layers.remove_layers(container_dir)
    assert list(container_dir.iterdir()) == []


@pytest.mark.integration
@root_only
def test_create_layers_with_missing_rootfs_creates_nothing(container_dir: Path,
                                                           tmp_path: Path) -> None:
    with pytest.raises(layers.RootfsNotFound):
        layers.create_layers(container_dir, tmp_path / "nope")
    assert list(container_dir.iterdir()) == []


@pytest.mark.integration
@root_only
def test_failed_mount_cleans_up_its_dirs(container_dir: Path, tmp_path: Path) -> None:
    odd = tmp_path / "lower:odd"
    odd.mkdir()
    with pytest.raises(kernel.MountError, match="^mount overlay on "):
        layers.create_layers(container_dir, odd)
    assert list(container_dir.iterdir()) == []


@pytest.mark.integration
@root_only
def test_upper_root_takes_the_lower_roots_mode(container_dir: Path, lower: Path) -> None:
    os.chmod(lower, 0o751)
    paths = layers.create_layers(container_dir, lower)
    assert stat.S_IMODE(paths.rootfs.stat().st_mode) == 0o751


@pytest.mark.integration
@root_only
def test_etc_files_through_the_mount_land_in_upper_only(container_dir: Path, lower: Path,
                                                        tmp_path: Path) -> None:
    (lower / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/bash\n"
                                          "vcap:x:1001:1001::/home/vcap:/bin/bash\n")
    (lower / "etc" / "group").write_text("root:x:0:\nvcap:x:1001:\n")
    (lower / "home" / "vcap").mkdir(parents=True)
    (lower / "home" / "vcap" / "mine").write_text("vcap's")
    for p in (lower / "home" / "vcap", lower / "home" / "vcap" / "mine"):
        os.chown(p, 1001, 1001)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    paths = layers.create_layers(container_dir, lower)

    user = etcfiles.write_etc_files(paths.rootfs, "c9", "10.0.0.2", "10.0.0.1", 10001,
                                    host_resolv_conf=resolv)

    assert user.renumbered_from == (1001, 1001)
    mine = (paths.rootfs / "home" / "vcap" / "mine").stat()
    assert (mine.st_uid, mine.st_gid) == (10001, 10001)
    assert (lower / "home" / "vcap" / "mine").stat().st_uid == 1001
    assert "vcap:x:10001:10001:" in (paths.upper / "etc" / "passwd").read_text()
    assert "vcap:x:1001:" in (lower / "etc" / "passwd").read_text()
    assert (paths.upper / "etc" / "resolv.conf").read_text() == "nameserver 10.0.0.1\n"
    assert (paths.upper / "etc" / "hostname").read_text() == "c9\n"
    assert not (lower / "etc" / "hostname").exists()


@pytest.mark.integration
@root_only
def test_copy_out_symlink_to_host_etc_reads_the_containers_etc(container_dir: Path,
                                                               lower: Path,
                                                               tmp_path: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    (paths.rootfs / "tmp" / "hostetc").symlink_to("/etc")
    (paths.rootfs / "tmp" / "shadow").symlink_to("/etc/shadow")
    out = tmp_path / "out"
    copy_out(paths.rootfs, "/tmp/hostetc/", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["group", "passwd"]
    assert (out / "passwd").read_text() == (lower / "etc" / "passwd").read_text()
    with pytest.raises(CopyError, match="^copy_out: /tmp/shadow/: "):
        copy_out(paths.rootfs, "/tmp/shadow/", str(tmp_path / "out2"))
    copy_out(paths.rootfs, "/tmp/shadow", str(tmp_path / "out3"))
    assert os.readlink(tmp_path / "out3") == "/etc/shadow"  # the link itself, not the file


@pytest.mark.integration
@root_only
def test_upper_usage_grows_with_a_write(container_dir: Path, lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    before_bytes, before_inodes = upper_usage(paths.upper)
    (paths.rootfs / "tmp" / "blob").write_bytes(os.urandom(1 << 20))
    os.sync()
    after_bytes, after_inodes = upper_usage(paths.upper)
    assert after_inodes == before_inodes + 2  # the copied-up /tmp and the file
    assert abs(after_bytes - before_bytes - (1 << 20)) <= 32000


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not (DEFAULT_ROOTFS / "bin" / "bash").exists(),
                    reason="default rootfs not built (scripts/build-rootfs.sh build/rootfs)")
def test_default_rootfs_runs_bash_in_the_overlay(container_dir: Path) -> None:
    paths = layers.create_layers(container_dir, DEFAULT_ROOTFS)
    etcfiles.add_container_user(paths.rootfs, 10002)
    done = subprocess.run(["chroot", "--userspec=10002:10002", str(paths.rootfs),
                           "/usr/bin/env", "-i", "HOME=/home/vcap", "/bin/bash", "-c",
                           "id -un; echo hi > ~/f; cat ~/f"],
                          capture_output=True, text=True, check=True)
    assert done.stdout == "vcap\nhi\n"
    assert (paths.upper / "home" / "vcap" / "f").read_text() == "hi\n"


@pytest.mark.integration
@root_only
def test_create_layers_remounts_an_existing_upper(container_dir: Path, lower: Path,
                                                  tmp_path: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    (paths.rootfs / "tmp" / "kept").write_text("kept")
    kernel.unmount(paths.rootfs)
    unmountable = tmp_path / "x:y"
    unmountable.mkdir()
    with pytest.raises(kernel.MountError):  # a failed remount must not eat the upper
        layers.create_layers(container_dir, unmountable)
    assert (paths.upper / "tmp" / "kept").read_text() == "kept"
    layers.create_layers(container_dir, lower)
    assert (paths.rootfs / "tmp" / "kept").read_text() == "kept"
