"""Observer hooks: what a metrics or audit plugin learns from a serving server, on fake
drivers. A failing observer never breaks a request."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from warden_framework import hookimpl
from warden_framework.client import Client, ServerError
from warden_framework.container import OUT_OF_MEMORY
from warden_framework.testing.fakes import FAKE_DRIVERS
from warden_framework.testing.server import ServerThread, fake_settings, running_server


class Recorder:
    def __init__(self) -> None:
        self.runtime = None
        self.requests: list[tuple[str, str, float, str | None]] = []
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @hookimpl
    def server_started(self, runtime):
        self.runtime = runtime

    @hookimpl
    def request_finished(self, frontend, request, seconds, error):
        self.requests.append((frontend, request, seconds, error))

    @hookimpl
    def container_event(self, container, event):
        with self.lock:
            self.events.append((container.handle, event))

    @hookimpl
    def health_routes(self):
        def count():
            return "text/plain", f"{len(self.runtime.orchestrator.handles())}\n".encode()
        return {"/count": count, "/broken": lambda: 1 / 0}


class Broken:
    @hookimpl
    def request_finished(self, frontend, request, seconds, error):
        raise RuntimeError("observer bug")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


@pytest.fixture
def observed(tmp_path):
    recorder = Recorder()
    port = free_port()
    settings = fake_settings(tmp_path, health_check_server={"port": port})
    with running_server(settings, FAKE_DRIVERS, extra_plugins=[recorder, Broken()]) as srv:
        yield srv, recorder, settings, port


def test_hook_server_started_gets_the_runtime_with_every_container(observed):
    srv, recorder, _, _ = observed
    assert recorder.runtime is srv.server
    assert recorder.runtime.orchestrator.handles() == []


def test_hook_request_finished_names_each_request_its_time_and_its_error(observed):
    _, recorder, settings, _ = observed
    with Client(settings.server.unix_domain_path) as c:
        c.ping()
        with pytest.raises(ServerError):
            c.info(handle="nope")
    # the hook runs once the answer is written: the client may read it first
    deadline = time.monotonic() + 5
    while len(recorder.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    kinds = [(f, r, e) for f, r, _, e in recorder.requests]
    assert kinds == [("warden", "PingRequest", None), ("warden", "InfoRequest", "unknown handle")]
    assert all(0 <= seconds < 10 for _, _, seconds, _ in recorder.requests)


def test_hook_container_event_hears_an_out_of_memory(observed):
    srv, recorder, settings, _ = observed
    with Client(settings.server.unix_domain_path) as c:
        handle = c.create().handle.decode()
    container = srv.orchestrator.lookup(handle)
    srv.orchestrator.out_of_memory(container)
    srv.orchestrator.record_event(container, OUT_OF_MEMORY)  # once only
    assert recorder.events == [(handle, OUT_OF_MEMORY)]
    assert container.state == "stopped" and container.events == [OUT_OF_MEMORY]


def test_hook_health_routes_serves_pages_and_keeps_the_bare_health_check(observed):
    _, _, settings, port = observed
    with Client(settings.server.unix_domain_path) as c:
        c.create()
    page = http_get(port, "/count")
    assert page.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Type: text/plain" in page
    assert page.endswith(b"\r\n\r\n1\n")
    assert http_get(port, "/anything").startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 0")
    assert http_get(port, "/broken").startswith(b"HTTP/1.1 500 ")


class BrokenPages:
    @hookimpl
    def health_routes(self):
        raise RuntimeError("observer bug")


def test_hook_health_routes_that_fail_serve_nothing_and_the_server_runs(tmp_path):
    recorder, port = Recorder(), free_port()
    settings = fake_settings(tmp_path, health_check_server={"port": port})
    with running_server(settings, FAKE_DRIVERS, extra_plugins=[recorder, BrokenPages()]):
        assert http_get(port, "/count").endswith(b"\r\n\r\n0\n")
        with Client(settings.server.unix_domain_path) as c:
            c.ping()


def test_a_server_whose_health_port_is_taken_stops_and_frees_its_socket(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = fake_settings(tmp_path, health_check_server={"port": taken.getsockname()[1]})
        thread = ServerThread(settings, FAKE_DRIVERS)
        with pytest.raises(RuntimeError, match="did not start"):
            thread.start()
        thread.stop()
    assert thread.error is not None and not thread._thread.is_alive()
    with pytest.raises(OSError):  # the Warden front end was drained: nobody listens
        Client(settings.server.unix_domain_path, timeout=2).ping()
