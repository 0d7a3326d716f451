"""Health check on 127.0.0.1:<port>: any request gets `HTTP/1.1 200 OK` and the close (facts
§3.5), except a GET of a path an observer plugin serves (hookspecs.health_routes, e.g.
/metrics), which gets that page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)
Handler = Callable[[], tuple[str, bytes]]


def _response(status: str, content_type: str | None = None, body: bytes = b"") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _page(handler: Handler) -> bytes:
    try:
        content_type, body = await asyncio.to_thread(handler)
    except Exception:  # an observer's page never takes the health check down
        log.exception("health page failed")
        return _response("500 Internal Server Error")
    return _response("200 OK", content_type, body)


async def start_health_server(port: int, routes: Mapping[str, Handler] | None = None
                              ) -> asyncio.AbstractServer:
    routes = dict(routes or {})

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.read(4096), timeout=10)
            method, path = (head.split(b"\r\n", 1)[0].split(b" ") + [b"", b""])[:2]
            handler = routes.get(path.decode("latin-1").split("?", 1)[0])
            if method == b"GET" and handler is not None:
                writer.write(await _page(handler))
            else:
                writer.write(_response("200 OK"))
            await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)
