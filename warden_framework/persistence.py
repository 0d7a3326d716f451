"""Owns when a container's record reaches disk: written at once, deferred, or forgotten.

The record is `<depot>/<id>/snapshot.json` (snapshot.py writes it atomically); the next start
rebuilds every container from it plus the kernel. The rule, written once:

- **At once**, before the request that changed it answers: what the next start must not get
  wrong. The container is born (before the first create step: a crash mid-create is undone
  by id) and active (after the last); stopped; destroying (from there a crash finishes the
  destroy); a net_in or net_out rule; a memory or CPU limit; an OOM event; a Spawn's job,
  whose id its client learns and may link after a restart; a job killed for its output (only
  the record keeps that flag); a recovered container, with what recovery learned.
- **Deferred**, written within FLUSH_DELAY (or by any write before then, so a busy container
  writes once per job): a Run's job (no client learns its id), the end of a job (its exit
  status is in its directory, where recovery reads it) and a job forgotten once its result
  was delivered. A forgotten job's directory is removed only after a record without it is on
  disk: a crash in between leaves a directory no record names (recovery removes it), never a
  record naming a job whose output is gone.
- **Forgotten**: a destroyed container's pending writes are dropped; its directory goes with
  the rest of the destroy.

The orchestrator reports changes here; how a deferred write is timed is the server's (it
registers a scheduler with `on_deferred`); nobody else decides.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import snapshot as snapshot_file
from .container import BORN, DESTROYED, Container

if TYPE_CHECKING:
    from .jobs import Job
    from .plugins import Hooks

FLUSH_DELAY = 0.05
# (container, delay in seconds): run `flush(container)` that much later, from any thread.
Scheduler = Callable[[Container, float], None]


def _no_scheduler(container: Container, delay: float) -> None:
    """Without a server nothing is timed: the caller flushes (the orchestrator's unit tests)."""


class SnapshotWriter:
    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks
        self._schedule: Scheduler = _no_scheduler
        self._pending_lock = threading.Lock()
        # Container ids whose record lags memory, and directories of forgotten jobs.
        self._stale: set[str] = set()
        self._forgotten: dict[str, list[Path]] = {}
        # One writer at a time per container (jobs end on other threads; the last writer must
        # see all), never one for all containers: a request never waits on another's I/O.
        self._write_locks: dict[str, threading.Lock] = {}

    def on_deferred(self, schedule: Scheduler) -> None:
        """How deferred writes are timed: `schedule(container, delay)` must run `flush`."""
        self._schedule = schedule

    # -- at once ---------------------------------------------------------------------------
    def write(self, container: Container) -> None:
        """Write the whole record now: the container, its jobs and every plugin's part."""
        with self._write_locks.setdefault(container.id, threading.Lock()):
            with self._pending_lock:
                self._stale.discard(container.id)
            data = container.to_dict()
            jobs = list(container.jobs.values())
            data["jobs"] = {str(j.id): j.to_dict() for j in jobs}
            if container.state != BORN:
                data["plugins"] = self._hooks.snapshot(container)
            snapshot_file.write_snapshot(container.path, data)
            for job in jobs:
                job.recorded = True

    # -- jobs: at once or deferred -----------------------------------------------------------
    def job_started(self, container: Container, job: Job, id_known: bool) -> None:
        """A Spawn's job (`id_known`: its client may link it after a restart) is written now;
        a Run's goes with the next flush, unless it already ended (a short Run's, forgotten
        as soon as it is answered: it never costs a write)."""
        if id_known:
            self.write(container)
        elif not job.done:
            self._schedule(container, FLUSH_DELAY)

    def job_ended(self, container: Container, job: Job) -> None:
        """A job ended: a record naming it running is stale but nothing relies on it yet,
        except a job killed for its output, whose flag only the record keeps."""
        if job.output_limit_hit:
            self._mark_stale(container)
            self._schedule(container, 0.0)
        elif job.recorded:
            self._mark_stale(container)
            self._schedule(container, FLUSH_DELAY)

    def job_forgotten(self, container: Container, job: Job) -> None:
        """A job whose result a client received left memory (facts §6.3): the record without
        it, then the removal of its directory, go with the next flush."""
        if container.state == DESTROYED:
            return
        with self._pending_lock:
            if job.recorded:
                self._stale.add(container.id)
            self._forgotten.setdefault(container.id, []).append(job.dir)
        self._schedule(container, FLUSH_DELAY)

    def flush(self, container: Container) -> None:
        """Settle what was deferred: write the record if it is stale or lacks a live job,
        then remove the directories of forgotten jobs (in that order)."""
        with self._pending_lock:
            stale = container.id in self._stale
            dirs = self._forgotten.pop(container.id, [])
        stale = stale or any(not job.recorded for job in list(container.jobs.values()))
        if stale and container.state != DESTROYED:
            self.write(container)
        for path in dirs:
            shutil.rmtree(path, ignore_errors=True)

    def settle(self, container: Container) -> None:
        """Write now and settle everything deferred (drain: the next start sees it all)."""
        if container.state != DESTROYED:
            self.write(container)
        self.flush(container)

    # -- forgotten ---------------------------------------------------------------------------
    def drop(self, container: Container) -> None:
        """The container is destroyed: nothing of it is written again."""
        with self._pending_lock:
            self._stale.discard(container.id)
            self._forgotten.pop(container.id, None)
        self._write_locks.pop(container.id, None)

    def _mark_stale(self, container: Container) -> None:
        with self._pending_lock:
            self._stale.add(container.id)


def read(container_dir: Path) -> dict | None:
    """A container's record as the last write left it, or None (then it is destroyed)."""
    return snapshot_file.read_snapshot(container_dir)
