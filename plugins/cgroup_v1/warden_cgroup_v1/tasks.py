"""The processes in a container's cgroups: listing them and signalling them (for stop).

Removing a group and its processes is `cgroups.remove`; this module does not wait.
"""

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import kernel
from .errors import CgroupError

if TYPE_CHECKING:
    from .cgroups import CgroupPaths

CGROUP_PROCS = "cgroup.procs"
TASKS = "tasks"


def list_pids(path: Path) -> list[int]:
    """Process ids (thread group ids) directly in the cgroup at `path`."""
    return [int(line) for line in kernel.read_control(path / CGROUP_PROCS).split()]


def pids_of(directories: Iterable[Path]) -> list[int]:
    """Sorted union of the processes of several cgroups; missing groups count as empty."""
    pids: set[int] = set()
    for directory in directories:
        try:
            pids.update(list_pids(directory))
        except FileNotFoundError:
            continue
    return sorted(pids)


def signal_all(paths: "CgroupPaths", sig: int, exclude_pids: Collection[int] = ()) -> list[int]:
    """Send `sig` to every process of the container except `exclude_pids` (e.g. wshd).

    Reads every hierarchy, so a process that joined only some of them is not missed.
    Returns the pids signalled (those that vanished meanwhile are left out).
    """
    try:
        pids = pids_of(paths.directories())
    except OSError as e:
        raise CgroupError(f"list processes of cgroup {paths.cpu}: {e.strerror}") from e
    return [pid for pid in pids if pid not in exclude_pids and kernel.kill(pid, sig)]
