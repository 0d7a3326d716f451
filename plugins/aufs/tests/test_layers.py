"""layers against the recording fake kernel: exactly which mount is asked for, that removal
unmounts before it deletes, and that it is idempotent. No aufs needed."""

import errno
import os
import stat
from pathlib import Path

import pytest

from warden_aufs import kernel, layers


def expected_mount(container_dir: Path, lower: Path) -> tuple:
    data = b"br:%s/upper=rw:%s=ro+wh,xino=%s/xino" % (
        os.fsencode(container_dir), os.fsencode(lower.resolve()), os.fsencode(container_dir))
    return ("mount", "none", str(container_dir / "rootfs"), "aufs", 0, data)


def test_create_layers_asks_for_exactly_one_aufs_branch_mount(fake_kernel, container_dir: Path,
                                                              lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    assert fake_kernel.calls == [expected_mount(container_dir, lower)]
    assert paths == layers.FsPaths(upper=container_dir / "upper",
                                   rootfs=container_dir / "rootfs", xino=container_dir / "xino")
    assert sorted(os.listdir(container_dir)) == ["rootfs", "upper"]
    assert kernel.is_mounted(paths.rootfs)


def test_create_layers_gives_the_upper_the_lower_roots_mode_and_owner(
        fake_kernel, container_dir: Path, lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    up, low = paths.upper.stat(), lower.stat()
    assert stat.S_IMODE(up.st_mode) == stat.S_IMODE(low.st_mode) == 0o750
    assert (up.st_uid, up.st_gid) == (low.st_uid, low.st_gid)


def test_create_layers_names_the_resolved_lower_in_the_branch(fake_kernel, container_dir: Path,
                                                              lower: Path,
                                                              tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(lower)
    layers.create_layers(container_dir, tmp_path / "alias")
    assert fake_kernel.calls == [expected_mount(container_dir, lower)]


def test_create_layers_removes_a_stale_xino_before_mounting(fake_kernel, container_dir: Path,
                                                            lower: Path) -> None:
    (container_dir / "xino").write_text("left by a crash")
    layers.create_layers(container_dir, lower)
    assert not (container_dir / "xino").exists()
    assert len(fake_kernel.mounts()) == 1


def test_create_layers_refuses_a_root_that_is_already_mounted(fake_kernel, container_dir: Path,
                                                              lower: Path) -> None:
    layers.create_layers(container_dir, lower)
    with pytest.raises(kernel.MountError) as info:
        layers.create_layers(container_dir, lower)
    assert info.value.errno == errno.EBUSY
    assert str(info.value) == f"mount aufs on {container_dir / 'rootfs'}: Device or resource busy"
    assert len(fake_kernel.mounts()) == 1


def test_create_layers_removes_the_dirs_it_made_when_the_mount_fails(
        fake_kernel, container_dir: Path, lower: Path) -> None:
    fake_kernel.fail_mount = errno.ENODEV
    with pytest.raises(kernel.MountError) as info:
        layers.create_layers(container_dir, lower)
    assert str(info.value) == (f"mount aufs on {container_dir / 'rootfs'}: No such device "
                               f"(the kernel has no aufs filesystem)")
    assert os.listdir(container_dir) == []
    assert fake_kernel.mounted == []


def test_create_layers_refuses_a_missing_lower_before_touching_anything(
        fake_kernel, container_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(layers.RootfsNotFound, match=f"^rootfs {tmp_path / 'nope'} not found$"):
        layers.create_layers(container_dir, tmp_path / "nope")
    assert fake_kernel.calls == []
    assert os.listdir(container_dir) == []


def test_remove_layers_unmounts_first_then_deletes(fake_kernel, container_dir: Path,
                                                   lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    (paths.rootfs / "written").write_text("x")
    layers.remove_layers(container_dir)
    assert fake_kernel.calls[1:] == [("unmount", str(paths.rootfs))]
    assert fake_kernel.listing_at_unmount[str(paths.rootfs)] == ["rootfs", "upper"]
    assert os.listdir(container_dir) == []
    assert (lower / "data" / "keep").read_text() == "lower keep\n"


def test_remove_layers_twice_is_harmless(fake_kernel, container_dir: Path, lower: Path) -> None:
    layers.create_layers(container_dir, lower)
    layers.remove_layers(container_dir)
    calls = list(fake_kernel.calls)
    layers.remove_layers(container_dir)
    assert fake_kernel.calls == calls
    assert os.listdir(container_dir) == []


def test_remove_layers_unmounts_nested_mounts_deepest_first(fake_kernel, container_dir: Path,
                                                            lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    (paths.rootfs / "proc").mkdir()
    fake_kernel.mounted.append(str(paths.rootfs / "proc"))
    layers.remove_layers(container_dir)
    assert [c for c in fake_kernel.calls if c[0] == "unmount"] == [
        ("unmount", str(paths.rootfs / "proc")), ("unmount", str(paths.rootfs))]


def test_remove_layers_of_a_half_created_dir_removes_what_is_there(
        fake_kernel, container_dir: Path) -> None:
    (container_dir / "upper" / "etc").mkdir(parents=True)
    (container_dir / "xino").write_text("")
    (container_dir / "snapshot.json").write_text("{}")
    layers.remove_layers(container_dir)
    assert fake_kernel.calls == []
    assert os.listdir(container_dir) == ["snapshot.json"]


def test_remove_layers_refuses_to_delete_under_a_mount_that_keeps_coming_back(
        fake_kernel, container_dir: Path, lower: Path, monkeypatch) -> None:
    paths = layers.create_layers(container_dir, lower)
    monkeypatch.setattr(kernel, "unmount", lambda target: None)  # an unmount that never works
    with pytest.raises(kernel.MountError, match="^unmount .*rootfs: Device or resource busy$"):
        layers.remove_layers(container_dir)
    assert sorted(os.listdir(container_dir)) == ["rootfs", "upper"]
    assert paths.upper.is_dir()
    fake_kernel.mounted.clear()  # let the fixture's removal through
