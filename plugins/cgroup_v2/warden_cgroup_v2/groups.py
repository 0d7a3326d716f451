"""A container's group `<cgroup_root>/<prefix>/<id>`: creating it, emptying it of processes,
and removing it. Limits and statistics live in the per-controller modules.

The group is a leaf that holds the container's processes itself: cgroup v2 lets a group that
hands controllers to children hold no processes (the no-internal-processes rule), and the
container needs its limits on the group its processes are in, so nothing is nested below it.
"""

import errno
import os
import time
from contextlib import contextmanager
from pathlib import Path

from . import events, hierarchy, kernel
from .errors import CgroupError

CGROUP_PROCS = "cgroup.procs"
CGROUP_KILL = "cgroup.kill"
CGROUP_FREEZE = "cgroup.freeze"

# How a populated group is emptied: cgroup.kill (5.14+) kills the whole subtree in the kernel,
# forks included; without it, freezing first (5.2+) stops forks while every pid gets SIGKILL;
# with neither, pids are signalled until none is left.
KILL, FREEZE, SIGNAL = "kill", "freeze", "signal"
REMOVE_TIMEOUT = 5.0
# Without cgroup.kill a fork can race the signals: signal again this often until empty.
_RESIGNAL_SECONDS = 0.1
_FREEZE_SECONDS = 1.0


def group_path(root: Path, prefix: str, id: str) -> Path:
    hierarchy.check_name(prefix)
    hierarchy.check_name(id)
    return root / prefix / id


def create(group: Path) -> None:
    """mkdir the group; an existing one is reused. Its parent (the prefix) must exist."""
    try:
        kernel.make_group(group)
    except OSError as e:
        raise CgroupError(f"create cgroup {group}: {e.strerror}") from e


def procs_file(group: Path) -> Path:
    """Writing "0" here moves the writer into the group, as `tasks` did on v1."""
    return group / CGROUP_PROCS


def pids(group: Path) -> list[int]:
    """Every process in the group and the groups nested in it, sorted."""
    found: set[int] = set()
    for directory, _, _ in os.walk(group):
        try:
            text = kernel.read_control(Path(directory) / CGROUP_PROCS)
        except FileNotFoundError:
            continue
        found.update(int(pid) for pid in text.split())
    return sorted(found)


def best_method(group: Path) -> str:
    if (group / CGROUP_KILL).exists():
        return KILL
    return FREEZE if (group / CGROUP_FREEZE).exists() else SIGNAL


def remove(group: Path, timeout: float = REMOVE_TIMEOUT, method: str | None = None) -> None:
    """Kill every process of the group, wait for `populated 0`, rmdir it (nested groups first).

    Idempotent: a missing group is fine. `method` forces KILL, FREEZE or SIGNAL (tests).
    Raises CgroupError naming the group if it is still there after `timeout` seconds.
    """
    if not group.is_dir():
        return
    deadline = time.monotonic() + timeout
    try:
        _empty(group, method or best_method(group), deadline)
        for directory, _, _ in os.walk(group, topdown=False):
            kernel.remove_group(Path(directory))
    except OSError as e:
        if e.errno == errno.ENOENT and not group.exists():
            return  # removed under us: the outcome we want
        raise CgroupError(f"remove cgroup {group}: {e.strerror}") from e


def _empty(group: Path, method: str, deadline: float) -> None:
    if method == KILL:
        kernel.write_control(group / CGROUP_KILL, "1")
        if events.wait_for(group, events.POPULATED, 0, deadline):
            return
    else:
        with _frozen(group, enabled=method == FREEZE, deadline=deadline):
            kernel.kill_all(pids(group))
        while time.monotonic() < deadline:
            step = min(deadline, time.monotonic() + _RESIGNAL_SECONDS)
            if events.wait_for(group, events.POPULATED, 0, step):
                return
            kernel.kill_all(pids(group))
    left = pids(group)
    raise CgroupError(f"remove cgroup {group}: processes {left} did not exit "
                      f"(still populated after {method})")


@contextmanager
def _frozen(group: Path, enabled: bool, deadline: float):
    """Freeze the group while the body runs, so no process forks past the signals; thaw after.

    A group that does not reach `frozen 1` in time (a task in uninterruptible sleep) is
    signalled anyway: SIGKILL does not need the freeze, it only closes the fork race.
    """
    if not enabled:
        yield
        return
    kernel.write_control(group / CGROUP_FREEZE, "1")
    try:
        events.wait_for(group, events.FROZEN, 1, min(deadline, time.monotonic() + _FREEZE_SECONDS))
        yield
    finally:
        kernel.write_control(group / CGROUP_FREEZE, "0")
