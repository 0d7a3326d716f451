"""Owns the part of a destroy that runs after its answer (orchestrator.finish_destroy: the
network, cgroups, rootfs and disk, then the pools and the directory), and waiting for it.

Cleanups run in the thread pool, at most one per CPU at a time: they are mostly kernel work
and Python holding the GIL, so more of them at once only makes every thread queue, and a
backlog of them must never delay a create (creates have a semaphore of their own).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from ..container import Container
from .tasks import keep

log = logging.getLogger(__name__)


class Cleanups:
    def __init__(self, finish: Callable[[Container], Awaitable[bool]]) -> None:
        self._finish = finish
        self._running = asyncio.Semaphore(os.cpu_count() or 1)
        self._pending: set[asyncio.Future] = set()

    @property
    def pending(self) -> int:
        """How many destroys have answered but not finished their cleanup. Read only; an
        observer may read it from another thread (the length of a set is one atomic read)."""
        return len(self._pending)

    def start(self, container: Container) -> None:
        """Begin the rest of `container`'s destroy. Returns before the task's first step, so
        the destroy's answer is written first."""
        keep(self._pending, self._run(container), log.error, "finishing a destroy failed: %s")

    async def _run(self, container: Container) -> bool:
        async with self._running:
            return await self._finish(container)

    async def wait(self) -> None:
        """Return once every cleanup started so far has finished."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
