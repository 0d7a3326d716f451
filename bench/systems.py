"""The systems under comparison, each offering the same timed operations:
`lifecycle` (create, run `true`, destroy), `create_destroy`, and `exec` (`true` in the live
container made by `start_target`); `clients` for several clients at once, and `pending` for
the objects a system still holds. Ours goes through the Python client; a peer is an OCI
runtime with the script's set-up around it (sandbox.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from warden_framework.client import Client
from warden_framework.jobs import SPARE_DIR

from .runtimes import Runtime
from .sandbox import Sandbox, Sandboxes, groups_under

TRUE = b"true"
# How long Ours.settle waits for the server's background cleanup of destroyed containers.
SETTLE_TIMEOUT = 30.0
# Checked once in each system's live container: the network set-up is really there.
NET_CHECK = ("/sbin/ip -4 addr show eth0 | grep -q 'inet ' && "
             "/sbin/ip route | grep -q '^default via'")
# Ours names the container's interface after its id: any address but loopback's will do.
OUR_NET_CHECK = (b"/sbin/ip -4 addr | grep 'inet ' | grep -qv '127.0.0.1' && "
                 b"/sbin/ip route | grep -q '^default via'")


class Ours:
    def __init__(self, socket: str, depot: Path | None = None, name: str = "warden",
                 prefix: str | None = None) -> None:
        """`depot` and `prefix` (the server's name_prefix) let settle and pending see the
        server's own objects."""
        self.name = name
        self.socket = socket
        self.depot = depot
        self.prefix = prefix
        self.client = Client(socket)
        self.client.connect()
        self.target: str | None = None
        self.target_spare: Path | None = None

    def lifecycle(self) -> None:
        handle = self.client.create().handle
        try:
            self._true(handle)
        finally:
            self.client.destroy(handle=handle)

    def create_destroy(self) -> None:
        self.client.destroy(handle=self.client.create().handle)

    def exec(self) -> None:
        assert self.target is not None
        self._true(self.target)

    def settle(self) -> None:
        """Wait until the server finished its work after the answers: the cleanup of every
        destroyed container (the depot holds only the live target's directory) and the spare
        directory for the target's next job, so none of it runs in a peer's measurement."""
        if self.depot is None:
            return
        deadline = time.monotonic() + SETTLE_TIMEOUT
        live = 1 if self.target is not None else 0
        while time.monotonic() < deadline and (
                len(os.listdir(self.depot)) > live
                or (self.target_spare is not None and not self.target_spare.is_dir())):
            time.sleep(0.0005)

    def pending(self) -> dict[str, int]:
        """Containers the server still holds objects of: depot entries (removed last, after
        every teardown), host links `w-<id>-*` and cgroups under its prefix."""
        assert self.depot is not None and self.prefix is not None
        ids = set(os.listdir(self.depot))
        linked = {name[2:].rsplit("-", 1)[0] for name in os.listdir("/sys/class/net")
                  if name.startswith("w-")}
        return {"depot": len(ids), "links": len(linked & ids),
                "cgroups": len(groups_under(self.prefix))}

    @contextmanager
    def clients(self, count: int) -> Iterator[list[Callable[[], None]]]:
        """`count` lifecycle callables, each on a connection of its own, one per thread."""
        opened: list[Ours] = []
        try:
            for _ in range(count):
                opened.append(Ours(self.socket, self.depot, self.name, self.prefix))
            yield [ours.lifecycle for ours in opened]
        finally:
            for ours in opened:
                ours.close()

    def start_target(self) -> None:
        self.target = self.client.create().handle
        reply = self.client.run(handle=self.target, script=OUR_NET_CHECK)
        if reply.exit_status != 0:
            raise RuntimeError(f"warden: network check failed in {self.target}: {reply.stderr!r}")
        self.target_spare = Path(reply.info.container_path.decode()) / "jobs" / SPARE_DIR

    def stop_target(self) -> None:
        if self.target is not None:
            self.client.destroy(handle=self.target)
            self.target = None
            self.target_spare = None

    def close(self) -> None:
        self.stop_target()
        self.client.disconnect()

    def _true(self, handle: str) -> None:
        reply = self.client.run(handle=handle, script=TRUE)
        if reply.exit_status != 0:
            raise RuntimeError(f"warden: `true` exited {reply.exit_status} in {handle}")


class Peer:
    """runc or crun, each container in a sandbox the script made."""

    def __init__(self, runtime: Runtime, sandboxes: Sandboxes, config: dict) -> None:
        self.runtime = runtime
        self.name = runtime.name
        self.sandboxes = sandboxes
        self.config = config
        self.target: Sandbox | None = None

    @contextmanager
    def _container(self) -> Iterator[Sandbox]:
        sandbox = self.sandboxes.make(self.config)
        try:
            self.runtime.run_detached(sandbox.name, sandbox.bundle)
            try:
                yield sandbox
            finally:
                self.runtime.delete(sandbox.name)
        finally:
            self.sandboxes.remove(sandbox)

    def lifecycle(self) -> None:
        with self._container() as sandbox:
            self.runtime.exec(sandbox.name, ["true"])

    def create_destroy(self) -> None:
        with self._container():
            pass

    def exec(self) -> None:
        assert self.target is not None
        self.runtime.exec(self.target.name, ["true"])

    def settle(self) -> None:
        """Wait until the netns of each removed sandbox is gone with its veth pair."""
        self.sandboxes.wait_links_gone()

    def pending(self) -> dict[str, int]:
        """Containers whose objects are still there: the runtime's state directories, and the
        script's bundles, veths (held until the netns dies) and cgroups."""
        return {"state": self.runtime.state_dirs(), **self.sandboxes.pending()}

    @contextmanager
    def clients(self, count: int) -> Iterator[list[Callable[[], None]]]:
        """`count` lifecycle callables for as many threads: the runtime's command line and the
        sandboxes are safe to use from several threads at once."""
        yield [self.lifecycle] * count

    def start_target(self) -> None:
        self.target = self.sandboxes.make(self.config)
        self.runtime.run_detached(self.target.name, self.target.bundle)
        self.runtime.exec(self.target.name, ["sh", "-c", NET_CHECK])

    def stop_target(self) -> None:
        if self.target is not None:
            target, self.target = self.target, None
            try:
                self.runtime.delete(target.name)
            finally:
                self.sandboxes.remove(target)

    def close(self) -> None:
        self.stop_target()
