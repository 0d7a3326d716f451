"""A job's stdin as the event loop writes it: the exec driver's non-blocking descriptor
(Job.stdin_fd: a pipe's write end or a TTY's master), fed from Garden's stdin messages and
StreamIn bodies. Owns that descriptor from then on and closes it exactly once."""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger(__name__)

# A writer waits while more than this is queued: a process that reads slowly slows its client
# down instead of growing the server's memory.
HIGH_WATER = 1 << 20
# What a TTY reads as the end of its input (VEOF, ^D): closing our copy of a terminal's master
# is no end of input for the process, as the exec driver keeps its own copy for the output.
TTY_EOF = b"\x04"


class StdinPipe:
    def __init__(self, fd: int, tty: bool = False) -> None:
        self._fd: int | None = fd
        self.tty = tty
        self._buffer = bytearray()
        self._closing = False
        self._watching = False
        self._room = asyncio.Event()
        self._room.set()

    @property
    def closed(self) -> bool:
        return self._fd is None or self._closing

    async def write(self, data: bytes) -> None:
        """Queue `data`, waiting while too much is queued. After the end of input or once the
        process stopped reading (its end of the pipe closed), data is dropped."""
        if self.closed or not data:
            return
        self._buffer += data
        self._flush()
        while len(self._buffer) > HIGH_WATER and self._fd is not None:
            self._room.clear()
            await self._room.wait()

    def end(self) -> None:
        """The end of input (a client's EOF message, the end of a StreamIn body): once what is
        queued is written, ^D for a TTY, then the descriptor is closed."""
        if self.closed:
            return
        if self.tty:
            self._buffer += TTY_EOF
        self._closing = True
        self._flush()

    def abort(self) -> None:
        """Close now, dropping what is queued (the process ended, or nobody may write again)."""
        self._buffer.clear()
        self._close_now()

    def _flush(self) -> None:
        while self._buffer and self._fd is not None:
            try:
                written = os.write(self._fd, self._buffer)
            except BlockingIOError:
                self._watch()
                return
            except OSError as exc:  # EPIPE: the process closed its stdin or ended
                log.debug("stdin descriptor %s: %s; dropping %d bytes", self._fd, exc,
                          len(self._buffer))
                self.abort()
                return
            del self._buffer[:written]
        self._unwatch()
        if self._closing:
            self._close_now()
        self._room.set()

    def _watch(self) -> None:
        if not self._watching:
            asyncio.get_running_loop().add_writer(self._fd, self._flush)
            self._watching = True
        if len(self._buffer) <= HIGH_WATER:
            self._room.set()

    def _unwatch(self) -> None:
        if self._watching:
            asyncio.get_running_loop().remove_writer(self._fd)
            self._watching = False

    def _close_now(self) -> None:
        if self._fd is None:
            return
        self._unwatch()
        fd, self._fd = self._fd, None
        os.close(fd)
        self._room.set()
