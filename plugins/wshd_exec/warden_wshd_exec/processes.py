"""Host-side view of a container's processes: every process in the pid namespace of its init.

Stop signals all of them but the init (TERM, then KILL after the timeout), as Warden's stop
does, and waits until they are gone.
"""

from __future__ import annotations

import os
import signal
import time

POLL = 0.005


def _ns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def members(init_pid: int) -> list[int]:
    """Host pids in the init's pid namespace, the init itself excluded."""
    ns = _ns_of(init_pid)
    if ns is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != init_pid and _ns_of(int(entry)) == ns:
            found.append(int(entry))
    return found


def _signal(pids: list[int], signo: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signo)
        except ProcessLookupError:
            pass


def _wait_gone(init_pid: int, deadline: float) -> list[int]:
    while True:
        left = [p for p in members(init_pid) if not _is_zombie(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


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
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return bool(args) and os.path.basename(args[0]) == b"wshd" and run_dir.encode() in args
