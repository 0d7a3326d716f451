"""One client connection of the Warden front end: its writer, the request it is answering,
and whether a drain is closing it. A connection is what holds references to containers
(grace.py), so it is hashable by its id."""

from __future__ import annotations

import asyncio
import itertools


class Connection:
    _ids = itertools.count(1)

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.id = next(self._ids)
        self.writer = writer
        self.current: str | None = None  # type name of the request being handled
        self.draining = False
        self.task: asyncio.Task | None = None

    def __hash__(self) -> int:
        return self.id
