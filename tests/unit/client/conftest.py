"""A fake Warden server on a unix socket, for client tests: answers with what a test says."""

from __future__ import annotations

import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.protobuf.message import Message as ProtoMessage

from warden_framework.protocol import FrameDecoder, decode_message, frame_message

# A handler gets each decoded request and returns the responses to send, raw bytes to
# send as they are, or None to close the connection.
Handler = Callable[[ProtoMessage], "list[ProtoMessage] | bytes | None"]


class FakeServer:
    """Serves one thread per connection; `requests` records every request received."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.requests: list[ProtoMessage] = []
        self.closed = threading.Event()  # set when a connection ends
        self._server = _UnixServer(str(path), _connection_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False


def _connection_handler(fake: FakeServer) -> type[socketserver.BaseRequestHandler]:
    class Connection(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                self._serve()
            finally:
                fake.closed.set()

        def _serve(self) -> None:
            decoder = FrameDecoder()
            while data := self.request.recv(65536):
                for frame in decoder.feed(data):
                    request = decode_message(frame)
                    fake.requests.append(request)
                    answer = fake.handler(request)
                    if answer is None:
                        return
                    if isinstance(answer, bytes):
                        self.request.sendall(answer)
                        continue
                    for response in answer:
                        self.request.sendall(frame_message(response, validate=False))

    return Connection


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for sockets (sun_path is limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="wdn-client-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_server(socket_dir: Path) -> Iterator[Callable[[Handler], FakeServer]]:
    """Start a FakeServer with a handler: `server = fake_server(handler)`."""
    servers: list[FakeServer] = []

    def start(handler: Handler) -> FakeServer:
        server = FakeServer(socket_dir / f"s{len(servers)}.sock", handler)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
