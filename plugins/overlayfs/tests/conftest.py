"""Fixtures for the overlayfs plugin's tests: a small lower rootfs and a container dir whose
layers are always removed, even when the test fails."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_overlayfs import kernel, layers



@pytest.fixture
def lower(tmp_path: Path) -> Path:
    """A lower rootfs: /etc/passwd with root, a file, a directory and a symlink."""
    root = tmp_path / "lower"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "data").mkdir()
    (root / "data" / "keep").write_text("lower keep\n")
    (root / "data" / "doomed").write_text("lower doomed\n")
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    (root / "link").symlink_to("/data/keep")
    return root


@pytest.fixture
def container_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty container dir; its layers are unmounted and removed at teardown."""
    c = tmp_path / f"c-{os.getpid()}"
    c.mkdir()
    yield c
    layers.remove_layers(c)
    assert not kernel.mounts_under(c), f"mounts left under {c}"
