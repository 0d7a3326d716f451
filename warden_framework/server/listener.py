"""The Warden front end's listener: the unix socket, one reader loop per connection, requests
answered strictly in order, connections concurrent. Bad frames are logged, answered with an
ErrorResponse where possible, and close only their own connection. It only listens and
dispatches (dispatch.py)."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..errors import ConfigError, WardenError
from ..frontends import FrontEnd
from ..protocol import (FrameDecoder, FrameError, ProtocolError, decode_message, error_response,
                        frame_message)
from .connection import Connection
from .dispatch import LONG_WAITS, Dispatcher
from .runtime import Runtime

log = logging.getLogger(__name__)
READ_SIZE = 1 << 16
# What one connection may hold: a partial frame past SLOW_FRAME_BYTES must keep coming, at
# MIN_FRAME_RATE bytes/s averaged since its first byte (plus FRAME_GRACE seconds) and with no
# pause longer than FRAME_STALL seconds, or the connection is closed and its buffer freed.
SLOW_FRAME_BYTES = 1 << 16
MIN_FRAME_RATE = 1 << 16
FRAME_GRACE = 1.0
FRAME_STALL = 2.0


def bind_socket(path: str, mode: int, group: str | None) -> socket.socket:
    """The listening socket, owned by `group` with `mode` before it accepts anyone: bound
    under a 0077 umask, so no connection can slip in while the mode is still the default."""
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"server.unix_domain_group: no group named {group!r}") from None
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)  # /run/warden
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o077)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chown(path, -1, gid)
        os.chmod(path, mode)
    except BaseException:
        sock.close()
        raise
    return sock


class WardenServer(FrontEnd):
    """The Warden protocol front end (`frontends: {warden: {}}`, on by default): the listening
    socket (server.unix_domain_path), its connections, and the order of answers on each.
    What a request does is the dispatcher's; the core's mechanics are the runtime's."""

    name = "warden"

    def __init__(self, settings: Settings, runtime: Runtime, options: Mapping[str, Any]) -> None:
        super().__init__(settings, runtime, options)
        self.dispatcher = Dispatcher(runtime)
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._drained = asyncio.Event()
        self.draining = False

    # -- serving ---------------------------------------------------------------------------
    async def start(self) -> None:
        path = self.settings.server.unix_domain_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = bind_socket(path, self.settings.server.unix_domain_permissions,
                           self.settings.server.unix_domain_group)
        self._server = await asyncio.start_unix_server(self._serve_connection, sock=sock,
                                                       limit=READ_SIZE)
        log.info("Listening on %s", path)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.draining:
            writer.close()
            return
        if len(self.connections) >= self.settings.server.max_connections:
            log.warning("refusing a connection: %d open (server.max_connections)",
                        len(self.connections))
            writer.close()
            return
        conn = Connection(writer)
        conn.task = asyncio.current_task()
        self.connections.add(conn)
        self.runtime.references.connect(conn, self.runtime.orchestrator.handles())
        try:
            await self._read_requests(conn, reader)
        except ProtocolError as exc:
            log.warning("connection %d: bad input: %s", conn.id, exc)
            with contextlib.suppress(Exception):
                writer.write(frame_message(error_response(str(exc))))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(conn)
            self.runtime.references.disconnect(conn, self.runtime.grace_of)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if self.draining and not self.connections:
                self._drained.set()

    async def _read_requests(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        """Answer every complete frame in arrival order until EOF or drain. A bad frame raises
        ProtocolError, but only after the frames that came before it have been answered."""
        decoder = FrameDecoder(max_frame=self.settings.server.max_frame_bytes)
        loop = asyncio.get_running_loop()
        started = 0.0  # when the partial frame in the decoder began
        while not conn.draining:
            if decoder.pending > SLOW_FRAME_BYTES:
                now = loop.time()
                deadline = min(now + FRAME_STALL,
                               started + FRAME_GRACE + decoder.pending / MIN_FRAME_RATE)
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), max(0.0, deadline - now))
                except asyncio.TimeoutError:
                    log.warning("connection %d: closed: a frame stalled at %d bytes (slower "
                                "than %d bytes/s)", conn.id, decoder.pending, MIN_FRAME_RATE)
                    return
            else:
                data = await reader.read(READ_SIZE)
            if not data:
                return
            fresh = not decoder.pending
            try:
                frames, bad = decoder.feed(data), None
            except FrameError as exc:
                frames, bad = exc.frames, exc
            if fresh or frames:  # the partial frame left in the decoder began with this read
                started = loop.time()
            for frame in frames:
                await self._answer(conn, decode_message(frame))
                if conn.draining:
                    return
            if bad is not None:
                raise bad

    async def _answer(self, conn: Connection, request: Any) -> None:
        conn.current = type(request).__name__
        started, error = time.perf_counter(), None
        try:
            async for response in self.dispatcher.handle(conn, request):
                conn.writer.write(frame_message(response))
                await conn.writer.drain()
        except WardenError as exc:
            error = exc.message
            conn.writer.write(frame_message(error_response(exc.message)))
            await conn.writer.drain()
        except (ConnectionError, asyncio.CancelledError) as exc:
            error = type(exc).__name__
            raise
        except Exception as exc:  # request boundary: a bug, but the connection goes on
            log.exception("request %s failed", conn.current)
            error = str(exc) or type(exc).__name__
            conn.writer.write(frame_message(error_response(error)))
            await conn.writer.drain()
        finally:
            self._observe(conn.current, time.perf_counter() - started, error)
            conn.current = None

    def _observe(self, request: str | None, seconds: float, error: str | None) -> None:
        self.runtime.orchestrator.hooks.request_finished(self.name, request, seconds, error)

    # -- drain ----------------------------------------------------------------------------
    async def drain(self) -> None:
        """SIGUSR2: stop accepting; close idle and waiting connections now, the others after
        their request (facts §3.3). The runtime then settles the records (Runtime.drain)."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.draining = True
            if conn.current is None or conn.current in LONG_WAITS:
                if conn.task is not None:
                    conn.task.cancel()
        if self.connections:
            await self._drained.wait()
