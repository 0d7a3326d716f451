"""The HTTP/1.1 Garden's Go client speaks, on asyncio streams: one request at a time per
connection, Content-Length or chunked bodies, routes as `/containers/:handle/...` templates,
and hijacked responses (Run, Attach, stdout, stderr) after which the handler owns the socket.

Written here rather than taken from a framework because the hijack framing must be exact
(the Go client reads the header with its low-level reader, then takes the raw socket and
whatever it buffered: a `Transfer-Encoding: chunked` header with raw bytes after it, never
`Connection: close`), and the rest is small.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from warden_framework.errors import WardenError

log = logging.getLogger(__name__)
MAX_HEADER_BYTES = 64 * 1024
MAX_JSON_BODY = 16 * 1024 * 1024
REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error"}


class HTTPError(Exception):
    """A request the server cannot even route (bad framing, unknown path)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    params: dict[str, str] = field(default_factory=dict)  # from the route template
    reader: asyncio.StreamReader | None = field(default=None, repr=False)
    _body: bytes | None = field(default=None, repr=False)
    _body_read: bool = False

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    async def body(self, limit: int = MAX_JSON_BODY) -> bytes:
        """The whole body (Content-Length or chunked), at most `limit` bytes."""
        if not self._body_read:
            chunks = [chunk async for chunk in self.body_chunks(limit)]
            self._body, self._body_read = b"".join(chunks), True
        return self._body or b""

    async def json(self) -> Any:
        raw = await self.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise HTTPError(400, f"malformed JSON body: {exc}") from None

    async def body_chunks(self, limit: int | None = None):
        """The body as it arrives (for tar uploads of any size)."""
        assert self.reader is not None
        self._body_read = True
        total = 0
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await self.reader.readline()
                try:
                    size = int(size_line.split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    raise HTTPError(400, "bad chunk size") from None
                if size == 0:
                    while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                total += size
                if limit is not None and total > limit:
                    raise HTTPError(413, f"body larger than {limit} bytes")
                data = await self.reader.readexactly(size)
                await self.reader.readexactly(2)
                yield data
        else:
            length = int(self.headers.get("content-length") or 0)
            if limit is not None and length > limit:
                raise HTTPError(413, f"body larger than {limit} bytes")
            while length > 0:
                data = await self.reader.read(min(length, 1 << 16))
                if not data:
                    raise HTTPError(400, "body ended early")
                length -= len(data)
                yield data


@dataclass
class Response:
    status: int = 200
    body: bytes = b"{}\n"
    content_type: str | None = "application/json"

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, (json.dumps(value, separators=(",", ":")) + "\n").encode())


@dataclass
class Streamed:
    """A body of unknown length sent chunked (StreamOut's tar): `chunks` yields bytes."""

    chunks: Any
    status: int = 200
    content_type: str = "application/x-tar"


@dataclass
class Hijack:
    """The handler takes the socket after a bounded-looking header (see the module doc):
    `run(reader, writer)` owns both until it returns; the connection is closed then."""

    run: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    status: int = 200
    content_type: str | None = None


Handler = Callable[[Request], Awaitable[Response | Streamed | Hijack]]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, list[str], Handler]] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        self._routes.append((method, template.strip("/").split("/"), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        allowed = False
        for route_method, template, handler in self._routes:
            if len(template) != len(parts):
                continue
            params = {}
            for want, got in zip(template, parts):
                if want.startswith(":"):
                    params[want[1:]] = got
                elif want != got:
                    break
            else:
                if route_method == method:
                    return handler, params
                allowed = True
        raise HTTPError(405 if allowed else 404, f"no route for {method} {path}")


def head(status: int, content_type: str | None, extra: list[str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines + extra) + "\r\n\r\n").encode()


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request's line and headers, or None at a clean end of the connection."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HTTPError(400, "connection ended inside a request header") from None
    except asyncio.LimitOverrunError:
        raise HTTPError(400, f"request header larger than {MAX_HEADER_BYTES} bytes") from None
    lines = raw.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise HTTPError(400, f"bad request line {lines[0]!r}") from None
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    path, _, query = target.partition("?")
    return Request(method=method, path=path, query=parse_qs(query, keep_blank_values=True),
                   headers=headers, reader=reader)


ErrorBody = Callable[[Exception], tuple[int, Any]]


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           router: Router, error_body: ErrorBody) -> None:
    """Answer requests one after another until the client closes, a request asks to close,
    or a handler hijacks the socket. `error_body(exc)` -> (status, JSON value) for a failure."""
    try:
        while True:
            try:
                request = await read_request(reader)
                if request is None:
                    return
                handler, request.params = router.match(request.method, request.path)
                result = await handler(request)
            except (ConnectionError, asyncio.IncompleteReadError):
                return
            except Exception as exc:  # request boundary: the client gets a typed error
                if not isinstance(exc, HTTPError) and not _expected(exc):
                    log.exception("garden request failed")
                status, value = error_body(exc)
                # Then close: the request's body may be unread, and the Go client opens a
                # new connection per call anyway.
                await _send(writer, Response.json(value, status))
                return
            if isinstance(result, Hijack):
                writer.write(head(result.status, result.content_type,
                                  ["Transfer-Encoding: chunked"]))
                await writer.drain()  # the header in its own write (see the module doc)
                await result.run(reader, writer)
                return
            if isinstance(result, Streamed):
                await _send_streamed(writer, result)
            else:
                await _send(writer, result)
            if request.headers.get("connection", "").lower() == "close":
                return
    except ConnectionError:  # the client left mid-answer: nothing more to tell it
        return
    finally:
        writer.close()


def _expected(exc: Exception) -> bool:
    """A failure the client caused or the core explains (no traceback in the log)."""
    return isinstance(exc, WardenError)


async def _send(writer: asyncio.StreamWriter, response: Response) -> None:
    writer.write(head(response.status, response.content_type,
                      [f"Content-Length: {len(response.body)}"]) + response.body)
    await writer.drain()


async def _send_streamed(writer: asyncio.StreamWriter, response: Streamed) -> None:
    writer.write(head(response.status, response.content_type, ["Transfer-Encoding: chunked"]))
    async for chunk in response.chunks:
        if chunk:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
