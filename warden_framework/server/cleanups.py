"""Owns the part of a destroy that runs after its answer (orchestrator.finish_destroy: the
network, cgroups, rootfs and disk, then the pools and the directory), and waiting for it.

Cleanups are work no client waits for, so they run in threads of their own at the lowest CPU
priority (nice 19): under load they take the CPU the loop and the requests leave. With 1,000
containers destroyed by 8 clients (`bench.compare --containers 1000`, scale part only, three
runs each way), the destroys were answered in 3.3-3.4 s instead of 5.3-5.5 s, ping p99 while
they ran and their cleanups finished fell from 7.5-7.6 to 5.5-5.6 ms, and the cleanup took as
long as before (17.7-19.5 s).

One thread for every two CPUs (one on a 2-CPU host): most of a cleanup is kernel work
(unmounts, the cgroup and network teardown), and a kernel without preemption (PREEMPT_NONE,
as here) does not take the CPU from a thread inside a system call, whatever its nice value;
each such call holds its CPU until it is done. With two threads on 2 CPUs, both CPUs could be
held at once. Same scale runs, alternating: one thread, ping p99 while destroying 3.69, 3.98,
4.48 ms, cleanup 16.5-18.7 s; two, 5.48, 4.90, 6.45 ms, 12.4-14.1 s. Sustained (bench (7))
the same: 56.1 and 54.7 lifecycles/s with 4 and 8 clients, against 56.3 and 52.0.

A nice value ranks threads within their scheduling group: the server's (its service's
cgroup, or its session's autogroup), so a cleanup yields to the server's loop and requests,
while the containers, in cpu groups of their own, meet the server's group as before. (A
server in the root cpu cgroup with autogroup off would pit each cleanup thread, weight 15,
against whole groups of weight 1024.)

A lower priority must not let cleanups fall behind for good: a busy server would hold ever
more dead containers' addresses, uids and disk. So a create waits while more than
BACKLOG_PER_CPU cleanups per CPU are pending (the CPU then goes to them), but never longer
than MAX_CREATE_WAIT, so that a teardown stuck in the kernel cannot stop creates. With 4
and 8 clients looping create, run, destroy for 30 s (bench (7)), the backlog stayed flat and
51.9 and 50.7 lifecycles/s completed (46.1 and 46.1 before; one run each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..container import Container
from .tasks import keep

log = logging.getLogger(__name__)

CLEANUP_NICE = 19
CPUS_PER_THREAD = 2
BACKLOG_PER_CPU = 2
MAX_CREATE_WAIT = 1.0


class Cleanups:
    def __init__(self, finish: Callable[[Container], bool]) -> None:
        self._finish = finish
        cpus = os.cpu_count() or 1
        self._threads = ThreadPoolExecutor(max_workers=max(1, cpus // CPUS_PER_THREAD),
                                           thread_name_prefix="cleanup",
                                           initializer=_lowest_priority)
        self._backlog_limit = BACKLOG_PER_CPU * cpus
        self._pending: set[asyncio.Future] = set()
        self._one_finished = asyncio.Event()

    @property
    def pending(self) -> int:
        """How many destroys have answered but not finished their cleanup. Read only; an
        observer may read it from another thread (the length of a set is one atomic read)."""
        return len(self._pending)

    def start(self, container: Container) -> None:
        """Begin the rest of `container`'s destroy. Returns before the task's first step, so
        the destroy's answer is written first."""
        task = keep(self._pending, self._run(container), log.error,
                    "finishing a destroy failed: %s")
        # After keep's own callback has taken the task out of the pending set, so that a
        # waiting create, woken, counts one fewer.
        task.add_done_callback(lambda _: self._one_finished.set())

    async def _run(self, container: Container) -> bool:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._finish,
                                                                container)

    async def room_for_a_create(self) -> None:
        """Return once at most the backlog limit of cleanups is pending, or after
        MAX_CREATE_WAIT seconds whatever the backlog."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(MAX_CREATE_WAIT):
                while len(self._pending) > self._backlog_limit:
                    self._one_finished.clear()
                    await self._one_finished.wait()

    async def wait(self) -> None:
        """Return once every cleanup started so far has finished."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def close(self) -> None:
        """Let the threads go (call after `wait`)."""
        self._threads.shutdown(wait=False, cancel_futures=True)


def _lowest_priority() -> None:
    """A cleanup thread's start: nice 19 for this thread only (Linux keeps a nice value per
    thread). Raising one's own nice value needs no privilege."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CLEANUP_NICE)
