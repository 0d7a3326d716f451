"""Raw HTTP to a Garden front end, the way Garden's Go client talks (garden-api.md §1, §5):
one fresh connection per call, `Connection: close` and `Host: api` on ordinary calls, JSON
bodies ending in a newline, and for Run/Attach/stdout/stderr a plain HTTP/1.1 request whose
response header is read before the raw socket (with what was read past the header) is taken
over. No client library: the bytes on the wire are what the tests check."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Hijacked:
    """The socket of a hijacked route after its header: NDJSON messages (control) or raw
    bytes (stdout/stderr), starting with what the header read already buffered."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock, self.buffer = sock, buffered

    def message(self, timeout: float = 30) -> dict | None:
        """The next NDJSON message, or None at the end of the stream."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def send(self, message: dict) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def read_all(self, timeout: float = 30) -> bytes:
        """Everything until the server closes (stdout/stderr streams)."""
        self.sock.settimeout(timeout)
        data, self.buffer = self.buffer, b""
        while chunk := self.sock.recv(65536):
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


class GardenClient:
    def __init__(self, address: str, network: str = "unix") -> None:
        self.address, self.network = address, network

    def _connect(self) -> socket.socket:
        if self.network == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.address)
        else:
            host, _, port = self.address.rpartition(":")
            sock = socket.create_connection((host, int(port)))
        sock.settimeout(60)
        return sock

    @staticmethod
    def path(template: str, **params: str) -> str:
        """A route path with its :params filled, percent-encoded as rata does (not `/`)."""
        for name, value in params.items():
            template = template.replace(f":{name}", quote(value, safe=""))
        return template

    def _request_bytes(self, method: str, path: str, body: Any, query: dict | None,
                       close: bool, raw: bytes | None = None) -> bytes:
        if query:
            path += "?" + urlencode(sorted(query.items()), doseq=True)
        payload = raw if raw is not None else (
            b"" if body is None else json.dumps(body).encode() + b"\n")
        lines = [f"{method} {path} HTTP/1.1", "Host: api", "User-Agent: Go-http-client/1.1"]
        if close:
            lines += ["Connection: close", "Accept-Encoding: gzip"]
        if payload or method in ("POST", "PUT"):
            lines += [f"Content-Length: {len(payload)}", "Content-Type: application/json"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    def call(self, method: str, path: str, body: Any = None, query: dict | None = None,
             raw: bytes | None = None) -> Reply:
        """An ordinary (stream path) call: send, read the whole response, close."""
        with self._connect() as sock:
            sock.sendall(self._request_bytes(method, path, body, query, True, raw))
            status, headers, rest = _read_head(sock)
            return Reply(status, headers, _read_body(sock, headers, rest))

    def hijack(self, method: str, path: str, body: Any = None) -> tuple[Reply, Hijacked | None]:
        """A Run/Attach/stdout/stderr call: the header, then the socket (None after an
        error, whose body is in the reply)."""
        sock = self._connect()
        sock.sendall(self._request_bytes(method, path, body, None, False))
        status, headers, rest = _read_head(sock)
        if not 200 <= status < 300:
            body_bytes = _read_body(sock, headers, rest)
            sock.close()
            return Reply(status, headers, body_bytes), None
        return Reply(status, headers, b""), Hijacked(sock, rest)


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed inside the response header: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1", lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status), headers, rest


def _read_body(sock: socket.socket, headers: dict[str, str], data: bytes) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in data:
                data += sock.recv(65536)
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(data) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("chunked body ended early")
                data += chunk
            if size == 0:
                return body
            body, data = body + data[:size], data[size + 2:]
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(data) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data if length < 0 else data[:length]
