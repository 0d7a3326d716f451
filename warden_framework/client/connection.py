"""The synchronous Warden client: one unix-socket connection, requests answered in order.

Owns the socket and the request/response cycle; messages are built by requests.py and
encoded by the protocol package. Behaves like the original Ruby client (warden-facts §1.5).
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.message import Message as ProtoMessage

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
from warden_framework.protocol.output_chunk import decode_chunk

__all__ = ["DEFAULT_SOCKET", "Client", "ServerError"]

DEFAULT_SOCKET = "/tmp/warden.sock"
_READ_SIZE = 64 * 1024


class Client:
    """A connection to a Warden server on a unix socket.

    `call` sends one request and returns its response; `stream` yields StreamResponses
    until the one carrying `exit_status`. Every request type also has a method named
    after it (`create`, `limit_memory`, ...) whose positional arguments are the
    request's required fields and whose keywords are any of its fields, e.g.
    `client.run(handle, "echo hi", privileged=True)`. An ErrorResponse raises
    ServerError; the server closing the connection raises EOFError.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] = DEFAULT_SOCKET,
        *,
        timeout: float | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout
        self.max_frame = max_frame
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(max_frame)
        self._frames: deque[bytes | bytearray] = deque()

    def __enter__(self) -> Client:
        if not self.connected:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()

    @property
    def connected(self) -> bool:
        """True between connect and disconnect (or the server closing the socket)."""
        return self._sock is not None

    def connect(self) -> None:
        """Connect; raises FileNotFoundError or ConnectionRefusedError without a server."""
        if self.connected:
            raise RuntimeError(f"already connected to {self.socket_path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._decoder = FrameDecoder(self.max_frame)
        self._frames.clear()

    def disconnect(self) -> None:
        """Close the connection, dropping unread responses; harmless when not connected."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def reconnect(self) -> None:
        """Disconnect, then connect again."""
        self.disconnect()
        self.connect()

    def write(self, request: ProtoMessage) -> None:
        """Send one request without waiting for its response (connects when needed)."""
        if not self.connected:
            self.connect()
        assert self._sock is not None
        self._sock.sendall(frame_message(request))

    def read(self) -> ProtoMessage:
        """Return the next response; ServerError for an ErrorResponse, EOFError at close."""
        frame = self._next_frame()
        try:
            response = decode_chunk(frame)  # the bulk of a Stream: job output, parsed once
            if response is None:
                response = decode_message(frame, response=True)
        except ProtocolError:
            self.disconnect()
            raise
        return raise_for_error(response)

    def call(self, request: ProtoMessage) -> ProtoMessage:
        """Send `request` and return its response."""
        self.write(request)
        return self.read()

    def stream(self, *args: Any, **fields: Any) -> Iterator[pb.StreamResponse]:
        """Yield the StreamResponses of a job, the last one being the one with exit_status.

        Takes a StreamRequest, or its fields as for `build_request` (`stream(handle,
        job_id)`). The request is sent when iteration starts. Closing the generator
        before the end disconnects, because unread responses would otherwise answer
        the next request.
        """
        request = stream_request(*args, **fields)
        self.write(request)
        finished = False
        try:
            while True:
                try:
                    response = self.read()
                except (ServerError, EOFError):
                    finished = True
                    raise
                finished = response.HasField("exit_status")
                yield response
                if finished:
                    return
        finally:
            if not finished:
                self.disconnect()

    def _next_frame(self) -> bytes | bytearray:
        while not self._frames:
            if self._sock is None:
                raise EOFError(f"not connected to {self.socket_path}")
            # Into the decoder's room: a large frame (a megabyte of job output) lands in
            # its own buffer and is decoded from there, never copied between the two.
            received = self._sock.recv_into(self._decoder.get_buffer(_READ_SIZE))
            if not received:
                self.disconnect()
                raise EOFError(f"connection to {self.socket_path} closed by the server")
            try:
                self._frames.extend(self._decoder.buffer_updated(received))
            except ProtocolError:
                self.disconnect()
                raise
        return self._frames.popleft()


def _request_method(name: str, request_cls: type[ProtoMessage]) -> Callable[..., Any]:
    def method(self: Client, *args: Any, **fields: Any) -> ProtoMessage:
        return self.call(build_request(request_cls, *args, **fields))

    method.__name__ = name
    method.__qualname__ = f"Client.{name}"
    method.__doc__ = f"Send a {request_cls.__name__} built from the arguments; return the response."
    return method


for _name, _cls in REQUEST_CLASSES.items():
    if _name != "stream":
        setattr(Client, _name, _request_method(_name, _cls))
