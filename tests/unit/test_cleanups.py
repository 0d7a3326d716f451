"""The cleanups after destroy answered (server/cleanups.py): they run at the lowest CPU
priority, at most one per CPU, and a create waits for their backlog to shrink, but not for
ever."""

from __future__ import annotations

import asyncio
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


def test_cleanups_run_at_the_lowest_priority_one_per_cpu_and_leave_the_callers_nice_alone():
    finish = Blocked()
    callers_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def scenario():
        cleanups = Cleanups(finish)
        for n in range(3 * (os.cpu_count() or 1)):
            cleanups.start(f"container-{n}")
        await asyncio.sleep(0.2)
        finish.let_all_go()
        await cleanups.wait()
        cleanups.close()
        return cleanups.pending

    assert run(scenario()) == 0
    assert finish.nice and set(finish.nice) == {cleanups_module.CLEANUP_NICE}
    assert finish.most_at_once == (os.cpu_count() or 1)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == callers_nice


def test_a_create_waits_until_the_backlog_is_back_at_its_limit(monkeypatch):
    monkeypatch.setattr(cleanups_module, "MAX_CREATE_WAIT", 10.0)
    finish = Blocked()

    async def scenario():
        cleanups = Cleanups(finish)
        limit = cleanups_module.BACKLOG_PER_CPU * (os.cpu_count() or 1)
        for n in range(limit + 1):
            cleanups.start(f"container-{n}")
        room = asyncio.ensure_future(cleanups.room_for_a_create())
        await asyncio.sleep(0.3)
        waited = not room.done()
        finish.let_all_go()
        await room
        left = cleanups.pending
        await cleanups.wait()
        cleanups.close()
        return waited, left, limit

    waited, left, limit = run(scenario())
    assert waited, "a create went ahead with the backlog over its limit"
    assert left <= limit


def test_a_waiting_create_goes_on_when_one_cleanup_brings_the_backlog_to_its_limit(monkeypatch):
    monkeypatch.setattr(cleanups_module, "MAX_CREATE_WAIT", 10.0)
    finish = Blocked()

    async def scenario():
        cleanups = Cleanups(finish)
        for n in range(cleanups_module.BACKLOG_PER_CPU * (os.cpu_count() or 1) + 1):
            cleanups.start(f"container-{n}")
        room = asyncio.ensure_future(cleanups.room_for_a_create())
        await asyncio.sleep(0.2)
        finish.let_one_go()
        t0 = time.monotonic()
        await room
        waited = time.monotonic() - t0
        finish.let_all_go()
        await cleanups.wait()
        cleanups.close()
        return waited

    assert run(scenario()) < 2  # not the 10 s cap: woken by the one that finished


def test_a_create_waits_at_most_max_create_wait_for_stuck_cleanups(monkeypatch):
    monkeypatch.setattr(cleanups_module, "MAX_CREATE_WAIT", 0.3)
    finish = Blocked()

    async def scenario():
        cleanups = Cleanups(finish)
        for n in range(cleanups_module.BACKLOG_PER_CPU * (os.cpu_count() or 1) + 1):
            cleanups.start(f"container-{n}")
        t0 = time.monotonic()
        await cleanups.room_for_a_create()
        waited = time.monotonic() - t0
        stuck = cleanups.pending
        finish.let_all_go()
        await cleanups.wait()
        cleanups.close()
        return waited, stuck

    waited, stuck = run(scenario())
    assert stuck > 0
    assert 0.3 <= waited < 5


@pytest.mark.parametrize("pending", [0, 1])
def test_a_create_does_not_wait_below_the_limit(pending):
    finish = Blocked()

    async def scenario():
        cleanups = Cleanups(finish)
        for n in range(pending):
            cleanups.start(f"container-{n}")
        t0 = time.monotonic()
        await cleanups.room_for_a_create()
        waited = time.monotonic() - t0
        finish.let_all_go()
        await cleanups.wait()
        cleanups.close()
        return waited

    assert run(scenario()) < 0.2
