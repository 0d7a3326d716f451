"""The core's asynchronous side, shared by every front end: the thread pool the orchestrator
runs in, one lock per container, how many creates and destroys run at once, grace timers,
and the parts it composes (job supervision, event watching, destroy cleanups, the timing of
deferred record writes). A front end (listener.py for the Warden protocol) turns requests
into calls here and knows nothing of these mechanics.

Every orchestrator call that touches a container runs in the pool while its lock is held, so
a container's requests never overlap and the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import Settings
from ..container import DESTROYED, OUT_OF_MEMORY, Container
from ..errors import ContainerNotFound, WardenError
from ..orchestrator import Orchestrator
from ..specs import CreateSpec
from .cleanups import Cleanups
from .events import EventWatcher
from .grace import References
from .supervision import JobSupervisor
from .tasks import Background

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, orchestrator: Orchestrator) -> None:
        self.settings = settings
        self.orchestrator = orchestrator
        self.executor = ThreadPoolExecutor(max_workers=settings.server.request_threads,
                                           thread_name_prefix="warden-req")
        # Creates and destroys are mostly Python (holding the GIL) and kernel work; more of
        # them at once than CPUs buys nothing and makes every thread, the loop's included,
        # queue for the GIL. Other requests keep the rest of the pool.
        self._lifecycle = asyncio.Semaphore(os.cpu_count() or 1)
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flushes: set[str] = set()  # container ids with a deferred write scheduled
        self.tasks = Background()
        self.references = References(self._grace_expired)
        self.cleanups = Cleanups(orchestrator.finish_destroy)
        self.events = EventWatcher(self._event_sources, self._on_event)
        self.jobs = JobSupervisor(settings, orchestrator, self.blocking, self.locked_unless_destroyed,
                                  self.tasks.run)
        orchestrator.persistence.on_deferred(self._schedule_flush)

    # -- running orchestrator calls --------------------------------------------------------
    async def blocking(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def lock_for(self, container: Container) -> asyncio.Lock:
        return self._locks.setdefault(container.id, asyncio.Lock())

    async def locked(self, container: Container, fn: Callable, *args: Any) -> Any:
        """`fn(*args)` in the pool while `container`'s lock is held."""
        async with self.lock_for(container):
            return await self.blocking(fn, *args)

    async def locked_unless_destroyed(self, container: Container, fn: Callable, *args: Any) -> Any:
        """As `locked`, but nothing (None) once the container is destroyed: for work nobody
        asked for (timers, events) that may find it gone."""
        async with self.lock_for(container):
            if container.state == DESTROYED:
                return None
            return await self.blocking(fn, *args)

    # -- lifecycle -------------------------------------------------------------------------
    async def create(self, spec: CreateSpec) -> Container:
        """orchestrator.create in the pool, at most one per CPU at a time, once the cleanup
        backlog leaves room (cleanups.py); its event sources watched from then on."""
        await self.cleanups.room_for_a_create()
        async with self._lifecycle:
            container = await self.blocking(self.orchestrator.create, spec)
        await self.events.watch(container)
        return container

    async def destroy(self, container: Container) -> None:
        """What a client waits for (every process killed, the handle free); the rest of the
        destroy is the cleanups' (cleanups.py), after the answer."""
        async with self.lock_for(container):
            if container.state == DESTROYED:
                raise ContainerNotFound(container.handle)
            self.events.unwatch(container)
            async with self._lifecycle:
                await self.blocking(self._destroy_now, container)
        self.references.forget(container.handle)
        self._locks.pop(container.id, None)
        self.cleanups.start(container)

    def _destroy_now(self, container: Container) -> None:
        """The obituary (facts §4.6; kept before any job is finished, so a Link woken by the
        destroy finds it), then the destroy: one hand-off to the pool for both."""
        with contextlib.suppress(Exception):
            container.obituary = self.orchestrator.info(container, full=False)
        self.orchestrator.destroy(container)

    async def wait_cleanups(self) -> None:
        """Return once every destroy started so far has finished its cleanup."""
        await self.cleanups.wait()

    async def _grace_expired(self, handle: str) -> None:
        try:
            container = self.orchestrator.lookup(handle)
            log.info("grace time of %s expired: destroying it", handle)
            await self.destroy(container)
        except WardenError as exc:
            log.info("grace destroy of %s: %s", handle, exc)

    def grace_of(self, handle: str) -> float | None:
        container = self.orchestrator.containers.get(handle)
        return None if container is None else container.grace_time

    # -- events ----------------------------------------------------------------------------
    async def _event_sources(self, container: Container) -> list:
        return await self.blocking(self.orchestrator.hooks.event_sources, container)

    def _on_event(self, container: Container, event: str) -> None:
        """An event a driver's source reported: an OOM stops the container (in the pool,
        under its lock); any other is recorded."""
        if event == OUT_OF_MEMORY:
            self.tasks.run(self.locked_unless_destroyed(container, self.orchestrator.out_of_memory,
                                                        container))
        else:
            self.orchestrator.record_event(container, event)

    # -- deferred record writes (persistence.py decides what is deferred) -------------------
    def _schedule_flush(self, container: Container, delay: float) -> None:
        """persistence's scheduler, called from any thread: flush `container` `delay` from
        now, once however often asked (a delay of 0 is never merged into a later one)."""
        loop = self._loop
        if loop is None:  # not serving yet: drain and the next write settle it
            return
        if threading.get_ident() == self._loop_thread:
            self._flush_later(container, delay)
        else:
            loop.call_soon_threadsafe(self._flush_later, container, delay)

    def _flush_later(self, container: Container, delay: float) -> None:
        if delay > 0:
            if container.id in self._flushes:
                return
            self._flushes.add(container.id)
        self.tasks.run(self._flush(container, delay))

    async def _flush(self, container: Container, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            if delay > 0:
                self._flushes.discard(container.id)
        await self.locked_unless_destroyed(container, self.orchestrator.persistence.flush, container)

    # -- start, drain, close ---------------------------------------------------------------
    async def start(self, recovered: list[Container]) -> None:
        """Take over the recovered containers: their events, running jobs and grace timers."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for container in recovered:
            await self.events.watch(container)
            for job in container.jobs.values():
                if not job.done:
                    self.jobs.track(container, job, recovered=True)
            self.references.start_timer(container.handle, container.grace_time)

    async def drain(self) -> None:
        """Once the front ends stopped: every record written and settled, every destroy's
        cleanup finished. Jobs keep running (facts §3.3)."""
        persistence = self.orchestrator.persistence
        for container in list(self.orchestrator.containers.values()):
            with contextlib.suppress(Exception):
                await self.locked(container, persistence.settle, container)
        await self.wait_cleanups()

    async def close(self) -> None:
        await self.wait_cleanups()  # a stopped server has finished every cleanup
        self.tasks.cancel_all()
        for container in list(self.orchestrator.containers.values()):
            self.events.unwatch(container)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.cleanups.close()
