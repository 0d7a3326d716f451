"""Host-side view of a container's processes: every descendant of its init.

Stop signals all of them but the init (TERM, then KILL after the timeout), as Warden's stop
does, and waits until they are gone.
"""

from __future__ import annotations

import os
import signal
import time

from . import kernel

POLL = 0.005


def members(init_pid: int) -> list[int]:
    """Host pids of the init's descendants: every process of its pid namespace, since the
    init is the namespace's reaper and adopts every orphan. Walking the tree reads a file
    per process of the container, where matching /proc/*/ns/pid read every process of the
    host (~1 ms with a few hundred). The kernel lists children without stopping them, so
    one fork may slip past a walk; stop_all repeats until nothing is left."""
    found: list[int] = []
    pending = [init_pid]
    while pending:
        children = kernel.children(pending.pop())
        found += children
        pending += children
    return found


def _signal(pids: list[int], signo: int) -> None:
    for pid in pids:
        kernel.kill(pid, signo)


def _wait_gone(init_pid: int, deadline: float) -> list[int]:
    while True:
        left = [p for p in members(init_pid) if not kernel.is_zombie(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)


def stop_all(init_pid: int, kill: bool, timeout: float) -> list[int]:
    """TERM every process but init, KILL what is left after `timeout`; return survivors.

    KILL is repeated until nothing is left: a process may fork between one listing and the
    signal, and its child would escape a single round.
    """
    if not kill:
        _signal(members(init_pid), signal.SIGTERM)
        if not _wait_gone(init_pid, time.monotonic() + timeout):
            return []
    deadline = time.monotonic() + 5
    while True:
        _signal(members(init_pid), signal.SIGKILL)
        left = _wait_gone(init_pid, min(deadline, time.monotonic() + 0.05))
        if not left or time.monotonic() >= deadline:
            return left


def is_wshd(pid: int, run_dir: str) -> bool:
    """Guard against a reused pid: the process must be a wshd serving this run dir."""
    args = kernel.cmdline(pid)
    return bool(args) and os.path.basename(args[0]) == b"wshd" and run_dir.encode() in args
