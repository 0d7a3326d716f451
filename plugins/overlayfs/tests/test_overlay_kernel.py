"""kernel.py on the real kernel: the overlay mount, and unmounting it through the seam.
unmount, mountinfo and openat2 themselves are tested in plugins/rootfs_common."""

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
