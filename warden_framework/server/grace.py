"""Per-connection references to containers and the grace timers they drive (facts §4.4).

A new connection references every existing container; create and any request naming a
container add a reference. When a container's last reference goes, a one-shot timer of its
grace_time starts; any new reference cancels it; None disables it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Awaitable, Callable, Hashable


class References:
    def __init__(self, expire: Callable[[str], Awaitable[None]]) -> None:
        self._expire = expire
        self._by_conn: dict[Hashable, set[str]] = defaultdict(set)
        self._by_handle: dict[str, set[Hashable]] = defaultdict(set)
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def connect(self, conn: Hashable, handles: list[str]) -> None:
        for handle in handles:
            self.add(conn, handle)

    def add(self, conn: Hashable, handle: str) -> None:
        self._by_conn[conn].add(handle)
        self._by_handle[handle].add(conn)
        timer = self._timers.pop(handle, None)
        if timer is not None:
            timer.cancel()

    def disconnect(self, conn: Hashable, grace_of: Callable[[str], float | None]) -> None:
        for handle in self._by_conn.pop(conn, set()):
            holders = self._by_handle.get(handle)
            if holders is None:
                continue
            holders.discard(conn)
            if not holders:
                del self._by_handle[handle]
                self.start_timer(handle, grace_of(handle))

    def start_timer(self, handle: str, grace_time: float | None) -> None:
        if grace_time is None or self._by_handle.get(handle):
            return
        loop = asyncio.get_running_loop()
        old = self._timers.pop(handle, None)
        if old is not None:
            old.cancel()
        self._timers[handle] = loop.call_later(grace_time, self._fire, handle)

    def forget(self, handle: str) -> None:
        """The container is gone: drop its references and timer."""
        for conn in self._by_handle.pop(handle, set()):
            self._by_conn[conn].discard(handle)
        timer = self._timers.pop(handle, None)
        if timer is not None:
            timer.cancel()

    def has_timer(self, handle: str) -> bool:
        return handle in self._timers

    def _fire(self, handle: str) -> None:
        self._timers.pop(handle, None)
        asyncio.get_running_loop().create_task(self._expire(handle))
