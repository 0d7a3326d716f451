"""Fixtures shared by the unit and integration tests: a free health-check port and a scraper
that fetches /metrics over HTTP, as Prometheus does, and parses the text format."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

CONTENT_TYPE = b"Content-Type: text/plain; version=0.0.4"


class Page:
    """The samples of one scrape; `page(name, **labels)` is one sample's value."""

    def __init__(self, text: str) -> None:
        self.samples = {(s.name, frozenset(s.labels.items())): s.value
                        for family in text_string_to_metric_families(text)
                        for s in family.samples}

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            names = sorted({n for n, _ in self.samples})
            raise AssertionError(f"no sample {name}{labels} on the page; names: {names}")
        return self.samples[key]

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def requests(self, request: str, frontend: str = "warden") -> float:
        """How many `request`s were answered (0 before the first)."""
        labels = frozenset({"frontend": frontend, "request": request}.items())
        return self.samples.get(("warden_request_duration_seconds_count", labels), 0)


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.fixture
def health_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scraper:
    """GET /metrics on the health port: a 200 in the text format, parsed."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(self) -> Page:
        head, _, body = http_get(self.port, "/metrics").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        assert CONTENT_TYPE in head, head
        return Page(body.decode())

    def until(self, ready: Callable[[Page], bool], timeout: float = 10) -> Page:
        """Scrape until `ready(page)`: request_finished runs after the answer is written, so
        a client can scrape before the request it just made is counted."""
        deadline = time.monotonic() + timeout
        while not ready(page := self()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return page


@pytest.fixture
def scrape(health_port: int) -> Scraper:
    return Scraper(health_port)
