"""The Garden front end (`frontends: {garden: {...}}`): Garden's HTTP API on a unix socket
or a TCP address, over the same containers as every other front end. Routes live in
containers.py (everything but processes) and processes.py (Run, Attach, their output).

Options:
    listen_network: unix (default) or tcp
    listen_address: a socket path (default /run/warden/garden.sock), or host:port for tcp
                    (127.0.0.1:7777 by default: Garden has no authentication)
    socket_permissions: the unix socket's mode (default 0660, root's group)
    allow_privileged: whether a client may create a privileged container (default false).
                    Garden's privileged container has no user namespace: its root is the
                    host's root, so a client that may ask for one may own the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Iterator, Mapping
from typing import Any

from warden_framework.errors import ConfigError
from warden_framework.frontends import FrontEnd

from . import containers, processes
from .errors import error_object
from .http import Router, serve_connection

DEFAULTS = {"listen_network": "unix", "listen_address": "/run/warden/garden.sock",
            "socket_permissions": 0o660, "allow_privileged": False}
TCP_DEFAULT = "127.0.0.1:7777"


class GardenFrontEnd(FrontEnd):
    name = "garden"

    def __init__(self, settings, runtime, options: Mapping[str, Any]) -> None:
        super().__init__(settings, runtime, options)
        self.network = options.get("listen_network", DEFAULTS["listen_network"])
        self.address = str(options.get("listen_address") or (
            TCP_DEFAULT if self.network == "tcp" else DEFAULTS["listen_address"]))
        self.mode = options.get("socket_permissions", DEFAULTS["socket_permissions"])
        self.allow_privileged = options.get("allow_privileged", False)
        self.router = Router()
        containers.register(self.router, self)
        processes.register(self.router, self)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()
        self._holders = itertools.count(1)
        self.draining = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        for key in options:
            if key not in DEFAULTS:
                raise ConfigError(f"frontends.garden.{key}: unknown option "
                                  f"(known: {', '.join(sorted(DEFAULTS))})")
        if options.get("listen_network", "unix") not in ("unix", "tcp"):
            raise ConfigError("frontends.garden.listen_network: unix or tcp")
        if options.get("listen_network") == "tcp":
            host, _, port = str(options.get("listen_address") or TCP_DEFAULT).rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("frontends.garden.listen_address: host:port for tcp")
        if not isinstance(options.get("allow_privileged", False), bool):
            raise ConfigError("frontends.garden.allow_privileged: true or false")
        mode = options.get("socket_permissions", 0o660)
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise ConfigError("frontends.garden.socket_permissions: a file mode like 0660")

    # -- what the routes use ---------------------------------------------------------------
    @property
    def orchestrator(self):
        return self.runtime.orchestrator

    def container(self, handle: str):
        """The live container `handle` (ContainerNotFound -> 404 ContainerNotFoundError)."""
        return self.orchestrator.lookup(handle)

    @contextlib.contextmanager
    def holding(self, handle: str) -> Iterator[None]:
        """Garden's grace time counts from the last request that touched a container: hold a
        reference while this request (or Run/Attach stream) lasts."""
        holder = ("garden", next(self._holders))
        self.runtime.references.add(holder, handle)
        try:
            yield
        finally:
            self.runtime.references.disconnect(holder, self.runtime.grace_of)

    # -- serving ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self.network == "tcp":
            host, _, port = self.address.rpartition(":")
            self._server = await asyncio.start_server(self._connection, host, int(port))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
            os.makedirs(os.path.dirname(os.path.abspath(self.address)), mode=0o755, exist_ok=True)
            old = os.umask(0o077)
            try:
                self._server = await asyncio.start_unix_server(self._connection, self.address)
            finally:
                os.umask(old)
            os.chmod(self.address, self.mode)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await serve_connection(reader, writer, self.router, error_object)
        except asyncio.CancelledError:
            writer.close()
        finally:
            self._connections.discard(task)

    async def drain(self) -> None:
        """Stop accepting and close every connection (a Run's process keeps running: a
        client re-attaches after the restart)."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self.network == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
