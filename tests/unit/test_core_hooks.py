"""The gathering hooks the core calls beside the drivers, pre_create and snapshot, answered by
small plugins registered next to the fake drivers (build_plugin_manager's `extra`) in a
whole server driven over its unix socket."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from warden_framework import hookimpl
from warden_framework.client import Client, ServerError
from warden_framework.config import Settings
from warden_framework.errors import WardenError
from warden_framework.testing.fakes import FAKE_DRIVERS, _Fake
from warden_framework.testing.server import ServerThread, fake_settings, running_server


class RefuseHandle:
    """Refuses to create the container with one handle; logs what it saw to the fakes' log."""

    def __init__(self, handle: str) -> None:
        self.handle = handle
        self.seen: list[dict] = []

    @hookimpl
    def pre_create(self, container, request, settings):
        _Fake.calls.append(("plugin", "pre_create", container.id))
        self.seen.append({"id": container.id, "handle": container.handle,
                          "network": str(container.network), "uid": container.uid,
                          "request_handle": request.handle, "exists": container.path.is_dir(),
                          "depot": str(settings.depot)})
        if container.handle == self.handle:
            raise WardenError(f"handle {self.handle} is reserved")


class PortsInSnapshot:
    """Keeps the container's handle and reserved ports in snapshot.json."""

    @hookimpl
    def snapshot(self, container):
        return {"ports-plugin": {"handle": container.handle, "ports": list(container.ports)}}


class SilentSnapshot:
    @hookimpl
    def snapshot(self, container):
        return None


class TagSnapshot:
    @hookimpl
    def snapshot(self, container):
        return {"tag-plugin": {"id": container.id}}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fake_settings(tmp_path, port={"pool_start_port": 31000},
                         user={"pool_start_uid": 51000, "pool_size": 4},
                         network={"pool_network": "10.97.0.0/29"})


@pytest.fixture
def serve(settings: Settings) -> Iterator[Callable[[list], tuple[ServerThread, Client]]]:
    """serve(extra_plugins) -> (server, connected client); both closed after the test."""
    _Fake.calls.clear()
    _Fake.fail_on = set()
    with ExitStack() as stack:
        def start(extra: list) -> tuple[ServerThread, Client]:
            server = stack.enter_context(running_server(settings, FAKE_DRIVERS, extra))
            client = stack.enter_context(Client(settings.server.unix_domain_path))
            return server, client

        yield start


def hooks_called(container_id: str) -> list[str]:
    return [hook for _, hook, cid in _Fake.calls if cid == container_id]


def snapshot_of(settings: Settings, container_id: str) -> dict:
    return json.loads((settings.depot / container_id / "snapshot.json").read_text())


# ------------------------------------------------------------------------------ pre_create

def test_hook_pre_create_refusal_reaches_the_client_and_nothing_is_made(serve,
                                                                        settings) -> None:
    plugin = RefuseHandle("forbidden")
    server, client = serve([plugin])
    with pytest.raises(ServerError, match="^handle forbidden is reserved$"):
        client.create(handle=b"forbidden")
    [seen] = plugin.seen
    assert hooks_called(seen["id"]) == ["pre_create"], "no step may run after a refusal"
    assert list(settings.depot.iterdir()) == []
    assert list(client.list().handles) == []
    pools = server.orchestrator.pools
    assert (len(pools.network), len(pools.uids)) == (2, 4), "the pools got everything back"
    handle = client.create(handle=b"allowed").handle
    assert list(client.list().handles) == [handle]


def test_hook_pre_create_runs_first_with_the_reserved_resources_and_the_request(
        serve, settings) -> None:
    plugin = RefuseHandle("forbidden")
    server, client = serve([plugin])
    client.create(handle=b"allowed")
    [seen] = plugin.seen
    assert hooks_called(seen["id"])[:2] == ["pre_create", "setup_fs"]
    assert seen == {"id": seen["id"], "handle": "allowed", "network": "10.97.0.0/30",
                    "uid": 51000, "request_handle": b"allowed", "exists": True,
                    "depot": str(settings.depot)}


# -------------------------------------------------------------------------------- snapshot

def test_hook_snapshot_state_lands_in_snapshot_json_under_plugins(serve, settings) -> None:
    server, client = serve([PortsInSnapshot(), SilentSnapshot(), TagSnapshot()])
    handle = client.create(handle=b"snap").handle
    container = server.orchestrator.lookup(handle.decode())
    plugins = snapshot_of(settings, container.id)["plugins"]
    assert plugins == {"ports-plugin": {"handle": "snap", "ports": []},
                       "tag-plugin": {"id": container.id}}


def test_hook_snapshot_is_asked_again_on_every_change(serve, settings) -> None:
    server, client = serve([PortsInSnapshot()])
    handle = client.create(handle=b"snap").handle
    container = server.orchestrator.lookup(handle.decode())
    port = client.net_in(handle=handle).host_port
    assert snapshot_of(settings, container.id)["plugins"]["ports-plugin"]["ports"] == [port]


def test_hook_resize_tty_has_a_default_that_refuses_clearly(tmp_path):
    """A driver written before resize_tty existed still loads, and a client asking for a
    window size gets a clear error instead of silence."""
    from warden_framework.errors import DriverError
    from warden_framework.jobs import Job
    from warden_framework.specs import CreateSpec, JobSpec
    from warden_framework.testing.fakes import FAKE_DRIVERS
    from warden_framework.testing.server import fake_settings
    from warden_framework.server.main import build_orchestrator

    orch = build_orchestrator(fake_settings(tmp_path), overrides=FAKE_DRIVERS,
                              load_entry_points=False)
    container = orch.create(CreateSpec())
    try:
        job = Job(id=1, dir=tmp_path, tty=(24, 80))
        with pytest.raises(DriverError, match="FakeExec exec driver has no TTY support"):
            orch.resize_tty(container, job, 30, 100)
        orch.resize_tty(container, Job(id=2, dir=tmp_path), 30, 100)  # no TTY: nothing to do
    finally:
        orch.destroy(container)
        orch.finish_destroy(container)


def test_hook_limit_pids_default_refuses_and_the_orchestrator_keeps_a_set_limit(tmp_path):
    """A limits driver written before limit_pids loads and refuses clearly; a driver's kept
    limit is written to the record, so recovery re-applies it (the cgroup drivers' side is
    the limits contract's test_hook_limit_pids_lowers_the_limit_a_fork_bomb_meets)."""
    from warden_framework import hookimpl as mark
    from warden_framework.errors import DriverError
    from warden_framework.server.main import build_orchestrator
    from warden_framework.specs import CreateSpec
    from warden_framework.testing.fakes import FakeLimits

    orch = build_orchestrator(fake_settings(tmp_path), overrides=FAKE_DRIVERS,
                              load_entry_points=False)
    container = orch.create(CreateSpec())
    try:
        with pytest.raises(DriverError, match="FakeLimits limits driver cannot limit processes"):
            orch.limit_pids(container, 10)
    finally:
        orch.destroy(container)
        orch.finish_destroy(container)

    class PidsLimits(FakeLimits):
        @mark
        def limit_pids(self, container, limit):
            return 7 if limit is None else limit

    orch = build_orchestrator(fake_settings(tmp_path), load_entry_points=False,
                              overrides={**FAKE_DRIVERS, "limits": PidsLimits})
    container = orch.create(CreateSpec())
    try:
        assert orch.limit_pids(container, 9) == 9
        assert json.loads(container.snapshot_path.read_text())["resources"]["limit_pids"] == 9
    finally:
        orch.destroy(container)
        orch.finish_destroy(container)
