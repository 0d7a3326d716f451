"""The cgroup2 mount at `cgroup_root` and the server's prefix group in it: the host check,
the controllers on offer, and handing memory, cpu, pids (and io) down to container groups.

The prefix group distributes controllers to its children, so by the no-internal-processes
rule it never holds a process itself; the container groups below it are leaves (groups.py).
"""

import errno
import os
from pathlib import Path

from . import kernel
from .errors import CgroupError

CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_CONTROLLERS = "cgroup.controllers"
SUBTREE_CONTROL = "cgroup.subtree_control"

REQUIRED_CONTROLLERS = ("memory", "cpu", "pids")
OPTIONAL_CONTROLLERS = ("io",)

# statfs magics a misconfigured cgroup_root usually has, to name it in the start-up error.
_FILESYSTEM_NAMES = {0x01021994: "tmpfs", 0x0027E0EB: "cgroup (v1)", 0x62656572: "sysfs"}


def unavailable_reason(root: Path) -> str | None:
    """Why `root` cannot hold our groups (not cgroup2, controllers missing), or None."""
    try:
        magic = kernel.filesystem_magic(root)
    except OSError as e:
        return f"cannot inspect cgroup root {root}: {e.strerror}"
    if magic != CGROUP2_SUPER_MAGIC:
        kind = _FILESYSTEM_NAMES.get(magic, f"filesystem type {magic:#x}")
        return (f"{root} is not a cgroup2 mount (it is {kind}): this host runs cgroup v1 or "
                f"hybrid; use drivers.limits: cgroup_v1, or point server.cgroup_root at a cgroup2 "
                f"mount")
    try:
        available = controllers(root)
    except OSError as e:
        return f"read {root / CGROUP_CONTROLLERS}: {e.strerror}"
    missing = [c for c in REQUIRED_CONTROLLERS if c not in available]
    if missing:
        return (f"cgroup2 at {root} lacks the {', '.join(missing)} controller"
                f"{'s' if len(missing) > 1 else ''} ({CGROUP_CONTROLLERS}: "
                f"{' '.join(available) or 'empty'}); they may be bound to cgroup v1 hierarchies "
                f"on this host (see /proc/cgroups; boot with cgroup_no_v1=all for pure v2)")
    return None


def controllers(group: Path) -> list[str]:
    """The controllers `group` may hand to its children (cgroup.controllers)."""
    return kernel.read_control(group / CGROUP_CONTROLLERS).split()


def enabled(group: Path) -> list[str]:
    """The controllers `group` hands to its children now (cgroup.subtree_control)."""
    return kernel.read_control(group / SUBTREE_CONTROL).split()


def enable(group: Path, wanted: tuple[str, ...]) -> None:
    """Enable each of `wanted` that `group` offers and has not enabled yet, in one write."""
    try:
        offered, on = controllers(group), enabled(group)
    except OSError as e:
        raise CgroupError(f"read controllers of cgroup {group}: {e.strerror}") from e
    missing = [c for c in wanted if c in offered and c not in on]
    if not missing:
        return
    try:
        kernel.write_control(group / SUBTREE_CONTROL, " ".join(f"+{c}" for c in missing))
    except OSError as e:
        busy = e.errno == errno.EBUSY
        hint = " (the group holds processes: no internal processes)" if busy else ""
        raise CgroupError(f"enable {', '.join(missing)} in {group / SUBTREE_CONTROL}: "
                          f"{e.strerror}{hint}") from e


def setup(root: Path, prefix: str) -> Path:
    """Create the prefix group with every controller we use enabled above and in it."""
    check_name(prefix)
    wanted = REQUIRED_CONTROLLERS + OPTIONAL_CONTROLLERS
    enable(root, wanted)
    group = root / prefix
    try:
        kernel.make_group(group)
    except OSError as e:
        raise CgroupError(f"create cgroup {group}: {e.strerror}") from e
    enable(group, wanted)
    return group


def teardown(root: Path, prefix: str) -> None:
    """rmdir the prefix group and any empty groups left under it. Idempotent.

    Controllers stay enabled in `root`: other users of the hierarchy may rely on them.
    """
    check_name(prefix)
    group = root / prefix
    for directory, _, _ in os.walk(group, topdown=False):
        try:
            kernel.remove_group(Path(directory))
        except OSError as e:
            hint = " (it still holds processes)" if e.errno == errno.EBUSY else ""
            raise CgroupError(f"remove cgroup {directory}: {e.strerror}{hint}") from e


def check_name(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a cgroup name: {name!r}")
