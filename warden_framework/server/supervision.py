"""Owns a running job's life on the server's side: its output limit checked while it runs,
its end reported to the orchestrator (which tells persistence), its output copied to syslog
when it has a log_tag, and the container's next job directory made ahead once a job started."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Settings
from ..container import Container
from ..jobs import Job
from ..orchestrator import Orchestrator
from .joblog import forward_output

OUTPUT_CHECK_INTERVAL = 0.1


class JobSupervisor:
    def __init__(self, settings: Settings, orchestrator: Orchestrator,
                 blocking: Callable[..., Awaitable[Any]], locked: Callable[..., Awaitable[Any]],
                 background: Callable[[Awaitable], None]) -> None:
        self.settings = settings
        self.orchestrator = orchestrator
        self._blocking = blocking  # (fn, *args): fn in the thread pool
        self._locked = locked  # (container, fn, *args): the same under the container's lock
        self._background = background
        self._preparing: set[str] = set()  # container ids whose next job dir is being made

    def started(self, container: Container, job: Job) -> None:
        """A job was just started by a request: supervise it, and make the next job's
        directory once this request is answered."""
        self.track(container, job)
        if container.id not in self._preparing:
            self._preparing.add(container.id)
            self._background(self._prepare_next_job(container))

    def track(self, container: Container, job: Job, recovered: bool = False) -> None:
        """Enforce the output limit while the job runs and report its end; copy its output
        to syslog when it has a log_tag (after a restart, from where the record says
        forwarding got to, so a line written while no server ran is not skipped; lines after
        the last write of the record are sent again). A job that already ended (a short
        Run's) needs no task."""
        if job.done:
            self.orchestrator.job_ended(container, job)
        else:
            self._background(self._supervise(container, job))
        if job.log_tag and not job.discard_output:
            start = dict(job.log_offsets) if recovered else None
            self._background(forward_output(job, self.settings.server.job_output_limit,
                                            self.settings.server.syslog_socket, start))

    async def _supervise(self, container: Container, job: Job) -> None:
        finished = asyncio.ensure_future(job.wait())  # one waiter for the job's whole life
        # A job without a limit (output thrown away, a Garden process): no wake-ups either.
        while not finished.done() and job.output_limit is not None:
            if job.output_size() > job.output_limit:
                await self._blocking(self.orchestrator.enforce_output_limit, container, job)
            await asyncio.wait({finished}, timeout=OUTPUT_CHECK_INTERVAL)
        await finished
        self.orchestrator.job_ended(container, job)

    async def _prepare_next_job(self, container: Container) -> None:
        try:
            await self._locked(container, self.orchestrator.prepare_job_dir, container)
        finally:
            self._preparing.discard(container.id)
