"""One thread per driver that waits for EXIT messages on every job's wshd connection and
finishes the job: no thread per job, no polling."""

from __future__ import annotations

import logging
import os
import selectors
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: list[tuple[object, Callable]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="wshd-reaper", daemon=True)
        self._thread.start()

    def watch(self, connection, on_exit: Callable[[object], None]) -> None:
        """Call on_exit(exit_info) when `connection` reports its job's exit, then close it."""
        with self._lock:
            self._pending.append((connection, on_exit))
        os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    self._drain_wakeups()
                    continue
                connection, on_exit = key.data
                self._selector.unregister(key.fileobj)
                try:
                    info = connection.wait_exit()
                except Exception as exc:  # the connection broke: the status file still says
                    log.warning("wshd connection lost: %s", exc)
                    info = None
                finally:
                    connection.close()
                try:
                    on_exit(info)
                except Exception:
                    log.exception("job exit callback failed")

    def _drain_wakeups(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        with self._lock:
            pending, self._pending = self._pending, []
        for connection, on_exit in pending:
            self._selector.register(connection, selectors.EVENT_READ, (connection, on_exit))
