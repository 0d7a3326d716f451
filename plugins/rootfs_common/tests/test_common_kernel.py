"""kernel.py: the mountinfo table, unmount and openat2, on tmpfs mounts on the real kernel."""

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from warden_rootfs_common import kernel

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mount needs root")


def _mount_tmpfs(target: Path) -> None:
    if kernel.libc().mount(b"tmpfs", os.fsencode(target), b"tmpfs", 0, b"size=1m") != 0:
        err = ctypes.get_errno()
        raise kernel.MountError(err, "mount tmpfs on", target)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Mounts tmpfs on the paths it is given; everything under tmp_path is unmounted after."""
    def mount(target: Path) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        _mount_tmpfs(target)
        return target

    yield mount
    for _ in range(4):
        for point in kernel.mounts_under(tmp_path):
            kernel.unmount(Path(point))
    assert not kernel.mounts_under(tmp_path), f"mounts left under {tmp_path}"


def test_mount_points_unescapes_octal_fields(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw - ext4 /dev/vda1 rw\n"
        r"40 22 0:35 / /var/with\040space\011tab\134back rw - tmpfs tmpfs rw" "\n")
    assert kernel.mount_points(str(info)) == ["/", "/var/with space\ttab\\back"]


def test_mounts_under_finds_escaped_paths_in_the_mount_point_field_only(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw - ext4 /dev/vda1 rw\n"
        r"40 22 0:35 / /d/c\040x rw - tmpfs tmpfs rw" "\n"
        r"41 40 0:36 / /d/c\040x/rootfs/a\011b rw - tmpfs tmpfs rw" "\n"
        r"42 22 0:35 /d/c\040x/rootfs /elsewhere rw - tmpfs tmpfs rw" "\n"  # a bind from it
        r"43 22 0:37 / /d/c\040xy rw - tmpfs tmpfs rw" "\n"  # a sibling sharing the prefix
        r"44 40 0:38 / /d/c\040x/upper rw - tmpfs tmpfs rw")  # the last line, no newline
    assert kernel.mounts_under(Path("/d/c x"), mountinfo=str(info)) == [
        "/d/c x/rootfs/a\tb", "/d/c x/upper", "/d/c x"]
    assert kernel.mounts_under(Path("/d/c x/upper"), Path("/d/c xy"), mountinfo=str(info)) == [
        "/d/c x/upper", "/d/c xy"]
    assert kernel.mounts_under(Path("/d/none"), mountinfo=str(info)) == []


def test_mount_error_text_names_action_target_reason_and_hint() -> None:
    err = kernel.MountError(errno.ENODEV, "mount overlay on", "/x", "modprobe overlay")
    assert str(err) == "mount overlay on /x: No such device (modprobe overlay)"
    assert isinstance(err, OSError) and err.errno == errno.ENODEV
    assert str(kernel.MountError(errno.EBUSY, "unmount", Path("/y"))) == \
        "unmount /y: Device or resource busy"


@pytest.mark.integration
@root_only
def test_unmount_is_idempotent_with_a_space_in_the_path(tmpfs, tmp_path: Path) -> None:
    target = tmpfs(tmp_path / "with space")  # mountinfo writes it as \040
    assert kernel.is_mounted(target)
    kernel.unmount(target)
    assert not kernel.is_mounted(target)
    kernel.unmount(target)
    kernel.unmount(target / "never-existed")


@pytest.mark.integration
@root_only
def test_is_mounted_sees_a_bind_mount_of_the_same_filesystem_and_agrees_with_the_table(
        tmpfs, tmp_path: Path) -> None:
    """A bind mount inside one filesystem keeps st_dev: only the mount itself can tell."""
    top = tmpfs(tmp_path / "top")
    (top / "source").mkdir()
    (top / "target").mkdir()
    (tmp_path / "link").symlink_to(top / "target")
    assert not kernel.is_mounted(top / "target")
    assert kernel.libc().mount(os.fsencode(top / "source"), os.fsencode(top / "target"),
                               None, 0x1000, None) == 0  # MS_BIND
    try:
        for path in (top, top / "target", tmp_path / "link"):
            assert kernel.is_mounted(path)
            assert (os.path.realpath(path) in kernel.mount_points()) is True
        assert not kernel.is_mounted(top / "source")
        assert not kernel.is_mounted(tmp_path / "missing" / "dir")
    finally:
        kernel.unmount(top / "target")
    assert not kernel.is_mounted(top / "target")


@pytest.mark.integration
@root_only
def test_unmount_of_a_busy_mount_detaches_it(tmpfs, tmp_path: Path) -> None:
    target = tmpfs(tmp_path / "t")
    (target / "f").write_text("still readable")
    fd = os.open(target / "f", os.O_RDONLY)
    try:
        kernel.unmount(target)
        assert not kernel.is_mounted(target)
        assert os.read(fd, 5) == b"still"
    finally:
        os.close(fd)


@pytest.mark.integration
@root_only
def test_mounts_under_lists_deepest_first(tmpfs, tmp_path: Path) -> None:
    outer = tmpfs(tmp_path / "t")
    inner = tmpfs(outer / "data")
    tmpfs(tmp_path / "t-sibling")  # shares the prefix, is not below
    assert kernel.mounts_under(outer) == [str(inner), str(outer)]


def test_open_in_root_cannot_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "marker").write_text("inside")
    (root / "abs").symlink_to("/etc")
    (root / "up").symlink_to("../../../../../../../etc")
    (root / "self").symlink_to("/proc/self/root/etc")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for path in ("/abs/marker", "up/marker", "/../../etc/marker"):
            fd = kernel.open_in_root(root_fd, path, os.O_RDONLY)
            with os.fdopen(fd) as f:
                assert f.read() == "inside", path
        with pytest.raises(OSError):  # /proc magic links refused (or absent in the root)
            kernel.open_in_root(root_fd, "/self/marker", os.O_RDONLY)
    finally:
        os.close(root_fd)
