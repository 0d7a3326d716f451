"""The aufs mount that joins a container's layers: source, type, flags and option data, built
from paths alone (warden-facts §10.7: `br:<upper>=rw:<rootfs>=ro+wh`). Pure: layers.py hands the
result to kernel.mount; nothing here touches the filesystem.

Options, in the order aufs reads them:
- `br:<upper>=rw:<lower>=ro+wh`: branches top-down. aufs looks names up from the first branch
  down and writes (and copies up) into the topmost writable one, so the container's upper dir
  comes first, read-write; the rootfs follows read-only, `+wh` telling aufs that whiteouts in it
  are to be honoured. A deleted lower file becomes a `.wh.<name>` whiteout in the upper dir.
- `xino=<container>/xino`: where aufs keeps its inode-number translation table. aufs creates
  that file with O_EXCL and unlinks it at once, so nothing stays visible; naming it keeps the
  table on the depot's filesystem beside the container instead of the default (`/tmp/.aufs.xino`
  or the upper branch, depending on the aufs version), where it would count as container use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FSTYPE = "aufs"
SOURCE = "none"  # aufs ignores the source; "none" is what mount(8) users write
FLAGS = 0
UPPER_PERM = "rw"
LOWER_PERM = "ro+wh"

# aufs splits its option data at ",", the branch list at ":" and a branch at "=".
_SEPARATORS = frozenset(",:=")


class BranchPathError(ValueError):
    """A path that cannot be written into aufs option data; the text names it."""


@dataclass(frozen=True)
class AufsMount:
    """The arguments of one mount(2) call."""

    source: str
    target: Path
    fstype: str
    flags: int
    data: bytes


def union_mount(upper: Path, lower: Path, xino: Path, target: Path) -> AufsMount:
    """The mount of `upper` (read-write) over `lower` (read-only, whiteouts honoured) on
    `target`, with its xino table at `xino`. Every path must be absolute."""
    data = b"br:%s=%s:%s=%s,xino=%s" % (
        _option_path(upper), UPPER_PERM.encode(), _option_path(lower), LOWER_PERM.encode(),
        _option_path(xino))
    return AufsMount(SOURCE, Path(target), FSTYPE, FLAGS, data)


def _option_path(path: Path) -> bytes:
    text = os.fsencode(path)
    if not text.startswith(b"/"):
        raise BranchPathError(f"path {path} is not absolute")
    if _SEPARATORS.intersection(os.fsdecode(text)):
        raise BranchPathError(f"path {path} contains one of , : =")
    return text
