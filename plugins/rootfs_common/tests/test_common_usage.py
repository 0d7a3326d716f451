"""usage: disk use of an upper dir, on a plain directory standing for it."""

import os
from pathlib import Path

from warden_rootfs_common.usage import BLOCK, upper_usage


def test_upper_usage_of_a_missing_upper_is_zero(tmp_path: Path) -> None:
    assert upper_usage(tmp_path / "none") == (0, 0)


def test_upper_usage_counts_the_top_dir_and_hard_links_once(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "f").write_bytes(b"x" * 10000)
    os.link(upper / "d" / "f", upper / "hard")
    used, inodes = upper_usage(upper)
    assert inodes == 3  # upper, d, f (= hard)
    assert used >= 10000
    assert used % BLOCK == 0


def test_upper_usage_does_not_follow_symlinks_out_of_the_upper(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"y" * 100000)
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "link").symlink_to(outside)
    used, inodes = upper_usage(upper)
    assert inodes == 2
    assert used < 100000
