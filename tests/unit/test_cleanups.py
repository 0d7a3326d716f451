"""The cleanups after destroy answered (server/cleanups.py): they run at the lowest CPU
priority, at most one per CPU, and a create waits for their backlog to shrink, but not for
ever."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

import pytest

from warden_framework.server import cleanups as cleanups_module
from warden_framework.server.cleanups import Cleanups


class Blocked:
    """A finish_destroy that records its thread's nice value and waits to be let go, one
    cleanup (`let_one_go`) or all of them (`let_all_go`) at a time."""

    def __init__(self) -> None:
        self._permits = threading.Semaphore(0)
        self._all = threading.Event()
        self.nice: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, container) -> bool:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        deadline = time.monotonic() + 10
        while not self._all.is_set() and time.monotonic() < deadline:
            if self._permits.acquire(timeout=0.01):
                break
        with self._lock:
            self.running -= 1
        return True

    def let_one_go(self) -> None:
        self._permits.release()

    def let_all_go(self) -> None:
        self._all.set()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def backlog_limit() -> int:
    return cleanups_module.BACKLOG_PER_CPU * (os.cpu_count() or 1)


@contextlib.asynccontextmanager
async def started(finish: Blocked, count: int):
    """Cleanups with `count` of them started; at the end all are let go, waited for and the
    threads closed, whatever the test did."""
    cleanups = Cleanups(finish)
    try:
        for n in range(count):
            cleanups.start(f"container-{n}")
        yield cleanups
    finally:
        finish.let_all_go()
        await cleanups.wait()
        cleanups.close()


def test_cleanups_run_at_the_lowest_priority_one_per_two_cpus_and_leave_the_callers_nice_alone():
    finish = Blocked()
    callers_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def scenario():
        async with started(finish, 3 * (os.cpu_count() or 1)) as cleanups:
            await asyncio.sleep(0.2)
        return cleanups.pending

    assert run(scenario()) == 0
    assert finish.nice and set(finish.nice) == {cleanups_module.CLEANUP_NICE}
    assert finish.most_at_once == max(1, (os.cpu_count() or 1) // cleanups_module.CPUS_PER_THREAD)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == callers_nice


def test_a_create_waits_over_the_limit_and_goes_on_when_one_cleanup_brings_it_back(monkeypatch):
    monkeypatch.setattr(cleanups_module, "MAX_CREATE_WAIT", 10.0)
    finish = Blocked()

    async def scenario():
        async with started(finish, backlog_limit() + 1) as cleanups:
            room = asyncio.ensure_future(cleanups.room_for_a_create())
            await asyncio.sleep(0.3)
            waited = not room.done()
            finish.let_one_go()
            t0 = time.monotonic()
            await room
            return waited, time.monotonic() - t0, cleanups.pending

    waited, woken_after, left = run(scenario())
    assert waited, "a create went ahead with the backlog over its limit"
    assert woken_after < 2  # not the 10 s cap: woken by the one that finished
    assert left <= backlog_limit()


def test_a_create_waits_at_most_max_create_wait_for_stuck_cleanups(monkeypatch):
    monkeypatch.setattr(cleanups_module, "MAX_CREATE_WAIT", 0.3)
    finish = Blocked()

    async def scenario():
        async with started(finish, backlog_limit() + 1) as cleanups:
            t0 = time.monotonic()
            await cleanups.room_for_a_create()
            return time.monotonic() - t0, cleanups.pending

    waited, stuck = run(scenario())
    assert stuck > 0
    assert 0.3 <= waited < 5


@pytest.mark.parametrize("pending", [0, 1])
def test_a_create_does_not_wait_below_the_limit(pending):
    finish = Blocked()

    async def scenario():
        async with started(finish, pending) as cleanups:
            t0 = time.monotonic()
            await cleanups.room_for_a_create()
            return time.monotonic() - t0

    assert run(scenario()) < 0.2
