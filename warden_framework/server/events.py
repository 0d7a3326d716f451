"""Owns the watching of containers' kernel event sources (OOM notifications): their fds are
read on the loop as they become readable, with no polling and no helper process. What an
event does is `on_event`'s (the runtime: an OOM stops the container)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..container import Container

log = logging.getLogger(__name__)


class EventWatcher:
    def __init__(self, sources_of: Callable[[Container], Awaitable[list]],
                 on_event: Callable[[Container, str], None]) -> None:
        self._sources_of = sources_of
        self._on_event_read = on_event
        self._watched: dict[str, list[Any]] = {}

    async def watch(self, container: Container) -> None:
        """Watch every event source the drivers give for `container` (again after a limit
        change, which may add one); a source already watched is left as it is."""
        sources = await self._sources_of(container)
        watched = self._watched.setdefault(container.id, [])
        loop = asyncio.get_running_loop()
        for src in sources:
            if any(s is src for s in watched):
                continue
            watched.append(src)
            loop.add_reader(src.fileno(), self._on_event, container, src)

    def unwatch(self, container: Container) -> None:
        for src in list(self._watched.get(container.id, [])):
            self._unwatch_one(container, src)
        self._watched.pop(container.id, None)

    def _on_event(self, container: Container, src: Any) -> None:
        try:
            event = src.read_event()
        except OSError as exc:
            log.warning("event source of %s failed: %s", container.id, exc)
            event = None
            self._unwatch_one(container, src)
        if event:
            self._on_event_read(container, event)

    def _unwatch_one(self, container: Container, src: Any) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(src.fileno())
        with contextlib.suppress(Exception):
            src.close()
        self._watched.get(container.id, []).remove(src)
