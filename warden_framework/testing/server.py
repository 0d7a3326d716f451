"""Run a real server (runtime + Warden front end) on its own event loop thread, with injected
drivers, for tests. `ServerThread.server` is its Runtime."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from typing import Iterator

from ..config import Settings, settings_from_dict
from ..drivers import Driver
from ..server.main import build_orchestrator, serve
from ..frontends import FrontEnd
from ..server.runtime import Runtime


def fake_settings(tmp_path, **overrides) -> Settings:
    """Settings for a server on fake drivers: socket and depot under tmp_path, no health port,
    no grace timer, small pools; `overrides` update sections, e.g. server={"job_output_limit": 10}."""
    data = {
        "server": {"unix_domain_path": str(tmp_path / "w.sock"),
                   "container_depot_path": str(tmp_path / "depot"), "container_grace_time": None},
        "health_check_server": {"port": None},
        "port": {"pool_start_port": 30000, "pool_size": 1000},
        "user": {"pool_start_uid": 50000, "pool_size": 8},
        "network": {"pool_network": "10.98.0.0/27", "release_delay": 0},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return settings_from_dict(data)


class ServerThread:
    def __init__(self, settings: Settings, overrides: dict[str, type[Driver]] | None = None,
                 extra_plugins: list | None = None,
                 frontends: dict[str, type[FrontEnd]] | None = None) -> None:
        """`frontends`: front end classes by name, instead of the entry points settings name."""
        self.settings = settings
        self.frontends = frontends
        self.orchestrator = build_orchestrator(settings, overrides, extra_plugins,
                                               load_entry_points=False)
        self.server: Runtime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="warden-test-server")
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.settings, self.orchestrator, self._stop, self._on_ready,
                        self.frontends)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()/stop()
            self.error = exc
            self._ready.set()

    def _on_ready(self, server: Runtime) -> None:
        self.server = server
        self._ready.set()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(30) or self.error:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return self

    def call(self, coro_fn, *args):
        """Run a coroutine function on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self._loop).result(60)

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


    def destroy_all(self) -> None:
        for container in list(self.orchestrator.containers.values()):
            if container.state != "destroyed":
                self.call(self.server.destroy, container)


@contextmanager
def running_server(settings: Settings, overrides=None, extra_plugins=None,
                   frontends=None) -> Iterator[ServerThread]:
    """A started server; on exit every container is destroyed, the server stops and the
    host-wide state (parent cgroups, chains) is removed, so a test leaves nothing behind."""
    thread = ServerThread(settings, overrides, extra_plugins, frontends).start()
    try:
        yield thread
    finally:
        try:
            thread.destroy_all()
        finally:
            thread.stop()
            thread.orchestrator.hooks.teardown_host(settings)
