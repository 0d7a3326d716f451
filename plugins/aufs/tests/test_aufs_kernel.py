"""The aufs mount on the real kernel: branch order, copy-up into the upper dir, whiteouts, and
removal. Skips, saying why, on a kernel without aufs (every mainline kernel)."""

import os
import stat
from pathlib import Path

import pytest

from warden_aufs import kernel, layers
from warden_aufs.driver import NO_AUFS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount needs root"),
    pytest.mark.skipif(not kernel.has_filesystem("aufs"), reason=f"aufs: {NO_AUFS}"),
]


def test_writes_land_in_the_upper_branch_and_the_lower_stays(container_dir: Path,
                                                            lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    assert kernel.is_mounted(paths.rootfs)
    assert (paths.rootfs / "data" / "keep").read_text() == "lower keep\n"
    (paths.rootfs / "data" / "keep").write_text("changed\n")
    (paths.rootfs / "new").write_text("new\n")
    assert (paths.upper / "data" / "keep").read_text() == "changed\n"
    assert (paths.upper / "new").read_text() == "new\n"
    assert (lower / "data" / "keep").read_text() == "lower keep\n"
    assert not (lower / "new").exists()


def test_delete_of_a_lower_file_makes_an_aufs_whiteout(container_dir: Path,
                                                       lower: Path) -> None:
    paths = layers.create_layers(container_dir, lower)
    (paths.rootfs / "data" / "doomed").unlink()
    assert not (paths.rootfs / "data" / "doomed").exists()
    whiteout = (paths.upper / "data" / ".wh.doomed").lstat()
    assert stat.S_ISREG(whiteout.st_mode)
    assert (lower / "data" / "doomed").exists()


def test_the_xino_table_leaves_no_file_behind(container_dir: Path, lower: Path) -> None:
    layers.create_layers(container_dir, lower)
    assert not (container_dir / "xino").exists()  # created O_EXCL and unlinked by aufs


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
