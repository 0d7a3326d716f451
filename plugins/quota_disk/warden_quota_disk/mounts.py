"""Which mount holds a path, from the text of /proc/self/mountinfo (facts §12.9
mount_point_spec: the nearest mount point above the real path). Pure: callers pass the text."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

USER_QUOTA_OPTIONS = ("usrquota", "usrjquota", "quota")
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo: where, what filesystem, from which source, with which options."""

    mount_point: str
    fstype: str
    source: str
    options: tuple[str, ...]  # per-mount options and superblock options together

    def has_option(self, *names: str) -> bool:
        """True if any option is one of `names` or starts with `name=` (usrjquota=aquota.user)."""
        return any(opt == name or opt.startswith(name + "=") for opt in self.options for name in names)

    @property
    def has_user_quota(self) -> bool:
        return self.has_option(*USER_QUOTA_OPTIONS)


def unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount in mountinfo order (later lines are mounted on top of earlier ones)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        super_options = tail[2].split(",") if len(tail) > 2 else []
        mounts.append(Mount(mount_point=unescape(fields[4]), fstype=tail[0],
                            source=unescape(tail[1]),
                            options=tuple(fields[5].split(",") + super_options)))
    return mounts


def existing_ancestor(path: str | Path) -> str:
    """The real path of `path`, or of its nearest existing parent (the depot may not exist)."""
    candidate = Path(os.path.abspath(path))
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return os.path.realpath(candidate)


def mount_of(real_path: str, mounts: list[Mount]) -> Mount:
    """The mount holding `real_path` (already resolved): the longest mount point above it,
    the topmost one when several are stacked on the same point."""
    best: Mount | None = None
    for mount in mounts:
        if _is_under(real_path, mount.mount_point):
            if best is None or len(mount.mount_point) >= len(best.mount_point):
                best = mount
    if best is None:
        raise LookupError(f"no mount holds {real_path}")
    return best


def mounts_using(path: str, mounts: list[Mount]) -> list[Mount]:
    """Mounts at or under `path`, or whose options name a path under it (an overlay upperdir)."""
    found = []
    for mount in mounts:
        if _is_under(mount.mount_point, path) or any(_option_names(opt, path) for opt in mount.options):
            found.append(mount)
    return found


def _option_names(option: str, path: str) -> bool:
    _, sep, value = option.partition("=")
    return bool(sep) and any(_is_under(part, path) for part in value.split(":"))


def _is_under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")
