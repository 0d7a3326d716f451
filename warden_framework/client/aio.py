"""The asyncio Warden client: the same API as connection.Client, with awaitable calls.

Owns one asyncio unix-socket connection; used where many connections run at once
(load tests, the server's own tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from google.protobuf.message import Message as ProtoMessage

from warden_framework.client.connection import DEFAULT_SOCKET
from warden_framework.client.errors import ServerError, raise_for_error
from warden_framework.client.requests import REQUEST_CLASSES, build_request, stream_request
from warden_framework.protocol import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    ProtocolError,
    decode_message,
    frame_message,
    pb,
)

__all__ = ["AsyncClient"]

_READ_SIZE = 64 * 1024


class AsyncClient:
    """An asyncio connection to a Warden server; see Client for the behaviour.

    `await client.call(request)`, `async for r in client.stream(handle, job_id)`, and one
    coroutine method per request type (`await client.ping()`). One task at a time may
    use a connection: responses are matched to requests by order only.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] = DEFAULT_SOCKET,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.max_frame = max_frame
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = FrameDecoder(max_frame)
        self._frames: deque[bytes] = deque()

    async def __aenter__(self) -> AsyncClient:
        if not self.connected:
            await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    @property
    def connected(self) -> bool:
        """True between connect and disconnect (or the server closing the socket)."""
        return self._writer is not None

    async def connect(self) -> None:
        """Connect; raises FileNotFoundError or ConnectionRefusedError without a server."""
        if self.connected:
            raise RuntimeError(f"already connected to {self.socket_path}")
        self._reader, self._writer = await asyncio.open_unix_connection(self.socket_path)
        self._decoder = FrameDecoder(self.max_frame)
        self._frames.clear()

    async def disconnect(self) -> None:
        """Close the connection, dropping unread responses; harmless when not connected."""
        writer = self._close()
        if writer is not None:
            with contextlib.suppress(OSError):  # the peer went first: closed all the same
                await writer.wait_closed()

    async def reconnect(self) -> None:
        """Disconnect, then connect again."""
        await self.disconnect()
        await self.connect()

    async def write(self, request: ProtoMessage) -> None:
        """Send one request without waiting for its response (connects when needed)."""
        if not self.connected:
            await self.connect()
        assert self._writer is not None
        self._writer.write(frame_message(request))
        await self._writer.drain()

    async def read(self) -> ProtoMessage:
        """Return the next response; ServerError for an ErrorResponse, EOFError at close."""
        frame = await self._next_frame()
        try:
            response = decode_message(frame, response=True)
        except ProtocolError:
            self._close()
            raise
        return raise_for_error(response)

    async def call(self, request: ProtoMessage) -> ProtoMessage:
        """Send `request` and return its response."""
        await self.write(request)
        return await self.read()

    async def stream(self, *args: Any, **fields: Any) -> AsyncIterator[pb.StreamResponse]:
        """Yield a job's StreamResponses up to the one with exit_status; see Client.stream."""
        await self.write(stream_request(*args, **fields))
        finished = False
        try:
            while True:
                try:
                    response = await self.read()
                except (ServerError, EOFError):
                    finished = True
                    raise
                finished = response.HasField("exit_status")
                yield response
                if finished:
                    return
        finally:
            if not finished:
                self._close()

    def _close(self) -> asyncio.StreamWriter | None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
        return writer

    async def _next_frame(self) -> bytes:
        while not self._frames:
            if self._reader is None:
                raise EOFError(f"not connected to {self.socket_path}")
            data = await self._reader.read(_READ_SIZE)
            if not data:
                self._close()
                raise EOFError(f"connection to {self.socket_path} closed by the server")
            try:
                self._frames.extend(self._decoder.feed(data))
            except ProtocolError:
                self._close()
                raise
        return self._frames.popleft()


def _request_method(
    name: str, request_cls: type[ProtoMessage]
) -> Callable[..., Coroutine[Any, Any, ProtoMessage]]:
    async def method(self: AsyncClient, *args: Any, **fields: Any) -> ProtoMessage:
        return await self.call(build_request(request_cls, *args, **fields))

    method.__name__ = name
    method.__qualname__ = f"AsyncClient.{name}"
    method.__doc__ = f"Send a {request_cls.__name__} built from the arguments; return the response."
    return method


for _name, _cls in REQUEST_CLASSES.items():
    if _name != "stream":
        setattr(AsyncClient, _name, _request_method(_name, _cls))
