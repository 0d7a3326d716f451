"""kernel.py on the real kernel: overlay mount and unmount, mountinfo, openat2 in a root."""

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_overlayfs import kernel

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="mount needs root")]


@pytest.fixture
def dirs(tmp_path: Path, lower: Path) -> Iterator[dict[str, Path]]:
    d = {"lower": lower}
    for name in ("upper", "work", "target"):
        d[name] = tmp_path / f"{name}-{os.getpid()}"
        d[name].mkdir()
    yield d
    for _ in range(4):
        for point in kernel.mounts_under(d["target"]):
            kernel.unmount(Path(point))
    assert not kernel.mounts_under(tmp_path)


def mount(d: dict[str, Path]) -> None:
    kernel.mount_overlay(d["lower"], d["upper"], d["work"], d["target"])


def test_mount_overlay_shows_lower_and_writes_to_upper(dirs: dict[str, Path]) -> None:
    mount(dirs)
    assert kernel.is_mounted(dirs["target"])
    assert (dirs["target"] / "data" / "keep").read_text() == "lower keep\n"
    (dirs["target"] / "new").write_text("new\n")
    assert (dirs["upper"] / "new").read_text() == "new\n"
    assert not (dirs["lower"] / "new").exists()


def test_unmount_is_idempotent(dirs: dict[str, Path]) -> None:
    mount(dirs)
    kernel.unmount(dirs["target"])
    assert not kernel.is_mounted(dirs["target"])
    kernel.unmount(dirs["target"])
    kernel.unmount(dirs["target"] / "never-existed")


def test_unmount_of_a_busy_mount_detaches_it(dirs: dict[str, Path]) -> None:
    mount(dirs)
    fd = os.open(dirs["target"] / "data" / "keep", os.O_RDONLY)
    try:
        kernel.unmount(dirs["target"])
        assert not kernel.is_mounted(dirs["target"])
        assert os.read(fd, 5) == b"lower"
    finally:
        os.close(fd)


def test_mount_error_names_target_and_reason(dirs: dict[str, Path]) -> None:
    with pytest.raises(kernel.MountError) as info:
        kernel.mount_overlay(dirs["lower"], dirs["upper"], dirs["work"] / "missing",
                             dirs["target"])
    assert info.value.errno == errno.ENOENT
    assert str(info.value) == f"mount overlay on {dirs['target']}: No such file or directory"
    assert isinstance(info.value, OSError)
    assert not kernel.is_mounted(dirs["target"])


def test_mount_refuses_option_separators_in_paths(dirs: dict[str, Path],
                                                  tmp_path: Path) -> None:
    odd = tmp_path / "a,b"
    odd.mkdir()
    with pytest.raises(kernel.MountError, match=r"contains one of , : \\"):
        kernel.mount_overlay(odd, dirs["upper"], dirs["work"], dirs["target"])


def test_mounts_under_lists_deepest_first(dirs: dict[str, Path], tmp_path: Path) -> None:
    mount(dirs)
    inner = dirs["target"] / "data"
    upper2, work2 = tmp_path / "u2", tmp_path / "w2"
    upper2.mkdir()
    work2.mkdir()
    kernel.mount_overlay(dirs["lower"], upper2, work2, inner)
    assert kernel.mounts_under(dirs["target"]) == [str(inner), str(dirs["target"])]


def test_mount_points_unescape_spaces(tmp_path: Path, lower: Path) -> None:
    spaced = tmp_path / "with space"
    upper, work = tmp_path / "u", tmp_path / "w"
    for d in (spaced, upper, work):
        d.mkdir()
    kernel.mount_overlay(lower, upper, work, spaced)
    try:
        assert kernel.is_mounted(spaced)
    finally:
        kernel.unmount(spaced)
    assert not kernel.is_mounted(spaced)


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
