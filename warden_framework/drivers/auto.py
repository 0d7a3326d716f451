"""`auto` as a driver name: the driver that suits this host, chosen at start-up.

Only the limits subsystem has a choice to make: cgroup_v2 where the cgroup root is the
unified hierarchy (every current distribution boots so), cgroup_v1 where the controllers sit
on v1 hierarchies (a legacy or hybrid host, whose root is a tmpfs of controller mounts).
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Settings

AUTO = "auto"
MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = re.compile(r"\\([0-7]{3})")
log = logging.getLogger(__name__)


def resolve(subsystem: str, name: str, settings: Settings, mountinfo: str = MOUNTINFO) -> str:
    """`name`, or for `auto` the name of the driver this host needs (logged)."""
    if name != AUTO:
        return name
    if subsystem != "limits":
        raise ConfigError(f"drivers.{subsystem}: 'auto' chooses only the limits driver; "
                          f"name one")
    root = settings.server.cgroup_root
    fstype = mount_type(root, mountinfo)
    chosen = "cgroup_v2" if fstype == "cgroup2" else "cgroup_v1"
    log.info("drivers.limits: auto chose %s (%s is %s)", chosen, root,
             f"a {fstype} mount" if fstype else "not a mount point")
    return chosen


def mount_type(path: str, mountinfo: str = MOUNTINFO) -> str | None:
    """The filesystem type mounted on `path` (the topmost mount there), or None."""
    target = os.path.realpath(path)
    found = None
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                # mount point is field 5 (octal escapes for spaces); fstype follows " - "
                dash = fields.index("-")
                if _unescape(fields[4]) == target:
                    found = fields[dash + 1]
    except OSError:
        return None
    return found


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    return _OCTAL.sub(lambda m: chr(int(m[1], 8)), field)
