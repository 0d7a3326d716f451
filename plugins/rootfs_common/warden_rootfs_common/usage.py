"""Disk use of a container's writable layer, for Info's disk_stat when no quota driver
reports it. Reads the upper dir only; the shared lower rootfs is not the container's use.
Where the upper dir is belongs to each driver's layers.py.
"""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 512  # st_blocks unit, whatever the filesystem's block size


def upper_usage(upper: Path) -> tuple[int, int]:
    """(bytes allocated, inodes) in the container's upper dir `upper`, hard links counted once.

    Whiteouts and the upper dir itself are inodes too. A missing upper dir is (0, 0).
    """
    try:
        top = os.lstat(upper)
    except FileNotFoundError:
        return 0, 0
    seen = {(top.st_dev, top.st_ino)}
    used = top.st_blocks * BLOCK
    pending = [os.fspath(upper)]
    while pending:
        used += _scan(pending.pop(), seen, pending)
    return used, len(seen)


def _scan(directory: str, seen: set[tuple[int, int]], pending: list[str]) -> int:
    used = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:  # removed while we walked: a running container
        return 0
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            used += st.st_blocks * BLOCK
        if entry.is_dir(follow_symlinks=False):
            pending.append(entry.path)
    return used
