"""The depot is root's alone and, on ext2/3/4, the top of a hierarchy for the block allocator,
so containers' directories spread over the block groups (see warden_framework/depot.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from warden_framework import depot


def test_prepare_makes_the_depot_root_only_whatever_it_was(tmp_path: Path) -> None:
    made = tmp_path / "a" / "depot"
    depot.prepare(made)
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    depot.prepare(old)
    for path in (made, old):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_a_file_system_without_the_flag_is_fine() -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm (tmpfs) on this host")
    plain = shm / f"warden-depot-test-{os.getpid()}"
    plain.mkdir()
    try:
        assert depot.mark_top_of_hierarchy(plain) is False  # tmpfs keeps no such flag
    finally:
        plain.rmdir()


def test_directories_made_in_a_marked_depot_spread_over_the_block_groups(tmp_path: Path) -> None:
    """Eight directories in a plain directory of ext4 get neighbouring inode numbers (the
    parent's group); in the depot, the allocator picks groups far apart."""
    probe = tmp_path / "probe"
    probe.mkdir()
    if not depot.mark_top_of_hierarchy(probe):
        pytest.skip(f"{tmp_path}'s file system keeps no top-of-hierarchy flag (not ext2/3/4)")
    marked = tmp_path / "depot"
    depot.prepare(marked)
    plain = tmp_path / "plain"
    plain.mkdir()
    spans = {}
    for parent in (plain, marked):
        inodes = []
        for i in range(8):
            (parent / f"c{i}").mkdir()
            inodes.append((parent / f"c{i}").stat().st_ino)
        spans[parent.name] = max(inodes) - min(inodes)
    assert spans["plain"] < 65536 <= spans["depot"], spans
