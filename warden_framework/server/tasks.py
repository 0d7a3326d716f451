"""Background tasks of the server's loop: each kept until it is done (asyncio holds tasks
weakly), its failure logged, all cancellable at close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def keep(group: set, coro: Awaitable, report: Callable[..., None], message: str) -> asyncio.Future:
    """Run `coro` as a task kept in `group` until it is done; report its failure, if any."""
    task = asyncio.ensure_future(coro)
    group.add(task)

    def done(finished: asyncio.Future) -> None:
        group.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            report(message, finished.exception())

    task.add_done_callback(done)
    return task


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future] = set()

    def run(self, coro: Awaitable) -> None:
        keep(self._tasks, coro, log.warning, "background task failed: %s")

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
