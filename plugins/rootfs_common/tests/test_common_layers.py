"""layers: the union layers' make/mount/unmount/delete flow against a recording mount seam, with
a made-up FsPaths subclass carrying an extra scratch dir. Nothing is mounted for real."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from warden_rootfs_common import layers
from warden_rootfs_common.kernel import MountError

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@dataclass(frozen=True)
class ScratchPaths(layers.FsPaths):
    scratch: Path

    def to_make(self) -> tuple[tuple[Path, int], ...]:
        return ((self.upper, 0o755), (self.scratch, 0o700), (self.rootfs, 0o755))

    def to_remove(self) -> tuple[Path, ...]:
        return (self.rootfs, self.upper, self.scratch)


class Seam:
    """Mount table of the fake: targets recorded as mounted; `stuck` ones never unmount."""

    def __init__(self) -> None:
        self.mounted: list[str] = []
        self.unmounted: list[str] = []
        self.stuck = False

    def is_mounted(self, target: Path) -> bool:
        return str(target) in self.mounted

    def mounts_under(self, *targets: Path) -> list[str]:
        tops = [str(target) for target in targets]
        found = [p for p in self.mounted
                 if any(p == top or p.startswith(top + "/") for top in tops)]
        return sorted(found, key=lambda p: p.count("/"), reverse=True)

    def unmount(self, target: Path) -> None:
        if not self.stuck:
            self.mounted.remove(str(target))
            self.unmounted.append(str(target))


@pytest.fixture
def seam() -> Seam:
    return Seam()


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    root = tmp_path / "lower"
    root.mkdir(mode=0o750)
    os.chmod(root, 0o750)
    return root


@pytest.fixture
def paths(tmp_path: Path) -> ScratchPaths:
    c = tmp_path / "c"
    c.mkdir()
    upper, rootfs = layers.layer_paths(c)
    return ScratchPaths(upper=upper, rootfs=rootfs, scratch=c / "scratch")


def test_layer_paths_put_upper_in_the_layer_dir_when_given(tmp_path: Path) -> None:
    assert layers.layer_paths(tmp_path / "c") == (tmp_path / "c" / "upper",
                                                  tmp_path / "c" / "rootfs")
    assert layers.layer_paths(tmp_path / "c", tmp_path / "vol") == (tmp_path / "vol" / "upper",
                                                                    tmp_path / "c" / "rootfs")


def test_check_rootfs_refuses_a_missing_dir_with_the_clients_text(tmp_path: Path) -> None:
    with pytest.raises(layers.RootfsNotFound, match=f"^rootfs {tmp_path / 'no'} not found$"):
        layers.check_rootfs(tmp_path / "no")
    (tmp_path / "alias").symlink_to(tmp_path)
    assert layers.check_rootfs(tmp_path / "alias") == tmp_path.resolve()


@root_only
def test_create_layers_makes_the_dirs_in_order_then_mounts(seam: Seam, paths: ScratchPaths,
                                                           lower: Path) -> None:
    seen: list[tuple[Path, list[str]]] = []

    def mount(lower_dir: Path, p: ScratchPaths) -> None:
        seen.append((lower_dir, sorted(os.listdir(p.rootfs.parent))))
        seam.mounted.append(str(p.rootfs))

    assert layers.create_layers(paths, lower, mount, seam, "unionfs") is paths
    assert seen == [(lower.resolve(), ["rootfs", "scratch", "upper"])]
    assert stat.S_IMODE(paths.scratch.stat().st_mode) == 0o700
    up, low = paths.upper.stat(), lower.stat()
    assert stat.S_IMODE(up.st_mode) == 0o750
    assert (up.st_uid, up.st_gid) == (low.st_uid, low.st_gid)


def test_create_layers_refuses_a_mounted_rootfs_naming_the_fstype(seam: Seam, paths: ScratchPaths,
                                                                  lower: Path) -> None:
    seam.mounted.append(str(paths.rootfs))
    with pytest.raises(MountError) as info:
        layers.create_layers(paths, lower, lambda *_: None, seam, "unionfs")
    assert str(info.value) == f"mount unionfs on {paths.rootfs}: Device or resource busy"
    assert os.listdir(paths.rootfs.parent) == []


@root_only
def test_create_layers_removes_only_the_dirs_it_made_when_the_mount_fails(
        seam: Seam, paths: ScratchPaths, lower: Path) -> None:
    paths.upper.mkdir()
    (paths.upper / "kept").write_text("from before")

    def mount(lower_dir: Path, p: ScratchPaths) -> None:
        raise MountError(errno.ENODEV, "mount unionfs on", p.rootfs)

    with pytest.raises(MountError, match="No such device"):
        layers.create_layers(paths, lower, mount, seam, "unionfs")
    assert os.listdir(paths.rootfs.parent) == ["upper"]
    assert (paths.upper / "kept").read_text() == "from before"


def test_remove_layers_unmounts_deepest_first_before_deleting(seam: Seam,
                                                              paths: ScratchPaths) -> None:
    for p in (paths.rootfs / "proc", paths.upper, paths.scratch):
        p.mkdir(parents=True)
    (paths.rootfs.parent / "snapshot.json").write_text("{}")
    seam.mounted += [str(paths.rootfs), str(paths.rootfs / "proc")]
    layers.remove_layers(paths, seam)
    assert seam.unmounted == [str(paths.rootfs / "proc"), str(paths.rootfs)]
    assert os.listdir(paths.rootfs.parent) == ["snapshot.json"]
    layers.remove_layers(paths, seam)
    assert len(seam.unmounted) == 2


def test_remove_layers_deletes_nothing_under_a_mount_that_stays(seam: Seam,
                                                                paths: ScratchPaths) -> None:
    paths.rootfs.mkdir()
    paths.upper.mkdir()
    seam.mounted.append(str(paths.rootfs))
    seam.stuck = True
    with pytest.raises(MountError) as info:
        layers.remove_layers(paths, seam)
    assert str(info.value) == f"unmount {paths.rootfs}: Device or resource busy"
    assert sorted(os.listdir(paths.rootfs.parent)) == ["rootfs", "upper"]


def test_remove_tree_removes_a_dir_a_file_and_a_symlink_but_not_its_target(
        tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "f").write_text("f")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "keep").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    for name in ("d", "f", "link", "missing"):
        layers.remove_tree(tmp_path / name)
    assert os.listdir(tmp_path) == ["target"]
    assert (tmp_path / "target" / "keep").read_text() == "keep"
