"""What every cgroup limits driver shares, v1 hierarchies or the unified v2 one: control
files read and written whole, groups made and removed, statistics files kept open, the
pids controller (the same two files on both), the MemoryStat fields Warden's info carries,
the devices a container may use, and the OOM event source the server watches.

The drivers are separate distributions (cgroup_v1, cgroup_v2); each re-exports the file
functions from its own kernel.py, where its unit tests replace them with fakes.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .container import OUT_OF_MEMORY
from .errors import DriverError

PIDS_MAX = "pids.max"
PIDS_CURRENT = "pids.current"
UNLIMITED_PIDS = "max"

# The MemoryStat message's fields, in field-number order (warden-facts §1.4).
MEMORY_STAT_KEYS = (
    "cache", "rss", "mapped_file", "pgpgin", "pgpgout", "swap", "pgfault", "pgmajfault",
    "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
    "hierarchical_memory_limit", "hierarchical_memsw_limit",
    "total_cache", "total_rss", "total_mapped_file", "total_pgpgin", "total_pgpgout",
    "total_swap", "total_pgfault", "total_pgmajfault", "total_inactive_anon",
    "total_active_anon", "total_inactive_file", "total_active_file", "total_unevictable",
)  # fmt: skip

# The devices a container may use, in the v1 devices.allow syntax (v2 compiles them into a
# BPF program). After warden-facts §10.9, widened to rwm and to full (1:7); without the
# host's console (5:1) and fuse (10:229), which wshd no longer puts in a container's /dev.
ALLOWED_DEVICES = (
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c 5:0 rwm",  # tty
    "c 5:2 rwm",  # ptmx
    "c 136:* rwm",  # pts/*
)


class CgroupError(DriverError):
    """A cgroup operation failed; str() is the message (texts from warden-facts §2.2)."""


# ---------------------------------------------------------------- control files, groups

def read_control(path: Path) -> str:
    """The whole text of a control file: open, read to the end, close, and nothing else
    (a Python text file adds an fstat, an ioctl and two seeks; Info reads three)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return pread_text(fd)
    finally:
        os.close(fd)


def pread_text(fd: int) -> str:
    """The whole text of the open control file `fd`, read afresh from offset 0."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("ascii")


def write_control(path: Path, value: str) -> None:
    """Write `value` to a control file in one write(2): the kernel parses one value per write.

    No O_CREAT: writing a control file that does not exist is an error, in a fake root too.
    """
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def kill(pid: int, sig: int) -> bool:
    """Send `sig` to `pid`; return False if the process is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def make_group(path: Path) -> bool:
    """mkdir a cgroup; return False if it already existed."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return False
    return True


def remove_group(path: Path) -> bool:
    """rmdir a cgroup; return False if it did not exist. EBUSY and the like raise OSError."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return False
    return True


class OpenStatFiles:
    """A container's statistics files, kept open and re-read with pread: the kernel renders a
    control file afresh for every read from offset 0, and after an idle spell the open and
    close cost twice the read (~35 of ~55 us). Info, which every Run answers with, reads three.
    A file found missing (v2 without swap accounting) is remembered as missing."""

    def __init__(self) -> None:
        self._fds: dict[Path, int | None] = {}
        self._lock = threading.Lock()

    def read(self, path: Path) -> str:
        text = self.read_if_present(path)
        if text is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        return text

    def read_if_present(self, path: Path) -> str | None:
        """The file's text now, or None if it does not exist; under the lock, so a close
        never frees a descriptor in use."""
        with self._lock:
            if path not in self._fds:
                try:
                    self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    self._fds[path] = None
            fd = self._fds[path]
            return None if fd is None else pread_text(fd)

    def close(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            if fd is not None:
                os.close(fd)


# ---------------------------------------------------------------------------------- pids

def set_pids_max(group: Path, limit: int | None) -> None:
    """Write pids.max of the pids group at `group`; None or 0 means no limit. Past it, fork
    and clone fail with EAGAIN."""
    try:
        write_control(group / PIDS_MAX, str(limit) if limit else UNLIMITED_PIDS)
    except OSError as e:
        raise CgroupError(f"Failed setting pids limit: {e.strerror}") from e


def pid_stat(group: Path, read=read_control) -> dict[str, int]:
    """current and limit (0: none) of the pids group at `group` (InfoResponse.pid_stat)."""
    try:
        current = int(read(group / PIDS_CURRENT))
        limit = read(group / PIDS_MAX).strip()
        return {"current": current, "limit": 0 if limit == UNLIMITED_PIDS else int(limit)}
    except (OSError, ValueError) as e:
        raise CgroupError(f"Failed getting pids stats: {e}") from e


# ----------------------------------------------------------------------------------- OOM

class OomWatch(Protocol):
    def fileno(self) -> int: ...
    def read_event(self) -> bool: ...
    def close(self) -> None: ...


class OomSource:
    """A driver's OOM watch as the server's event source: read_event() -> "out of memory"
    or None (hookspecs.event_sources)."""

    def __init__(self, watch: OomWatch) -> None:
        self.watch = watch

    def fileno(self) -> int:
        return self.watch.fileno()

    def read_event(self) -> str | None:
        return OUT_OF_MEMORY if self.watch.read_event() else None

    def close(self) -> None:
        self.watch.close()


class ContainerFiles:
    """What a cgroup driver keeps open per container between requests: its statistics files
    (OpenStatFiles) and its OOM event source; both closed when its limits are released."""

    def __init__(self) -> None:
        self._stats: dict[str, OpenStatFiles] = {}
        self._oom: dict[str, OomSource] = {}

    def stat_files(self, container_id: str) -> OpenStatFiles:
        files = self._stats.get(container_id)
        return files if files is not None else self._stats.setdefault(container_id, OpenStatFiles())

    def oom_source(self, container_id: str, open_watch: Callable[[Path], OomWatch],
                   group: Path) -> OomSource:
        """The container's OOM source, made by `open_watch(group)` the first time."""
        source = self._oom.get(container_id)
        if source is None:
            source = self._oom[container_id] = OomSource(open_watch(group))
        return source

    def close(self, container_id: str) -> None:
        for kept in (self._oom.pop(container_id, None), self._stats.pop(container_id, None)):
            if kept is not None:
                kept.close()
