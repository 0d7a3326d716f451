"""The installed plugin in a real warden-server process on the real kernel (overlayfs, wshd,
the host's cgroups): found through its `warden.plugins` entry point alone, it serves /metrics
that follow a real container's create, job and destroy."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from warden_framework.client import Client
from warden_framework.plugins import EXTRA_PLUGINS_GROUP
from warden_framework.testing import real_server
from warden_framework.testing.process import ServerProcess
from warden_framework.testing.real_server import server_config

pytestmark = pytest.mark.integration



def missing() -> str | None:
    if "metrics" not in {ep.name for ep in importlib.metadata.entry_points(group=EXTRA_PLUGINS_GROUP)}:
        return "warden-metrics is not installed in this venv (pip install -e plugins/metrics)"
    return real_server.missing()


def config(tmp_path: Path, health_port: int) -> dict:
    """The kit's real-server shape (no network driver) with a health-check port."""
    return server_config(tmp_path, health_check_server={"port": health_port})


@pytest.fixture
def server(tmp_path, health_port):
    reason = missing()
    if reason:
        pytest.skip(reason)
    srv = ServerProcess(config(tmp_path, health_port), tmp_path)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop_and_clean()


def test_a_real_server_counts_a_real_container(server, scrape):
    page = scrape()
    assert page("warden_containers", state="active") == 0
    assert page("warden_pool_size", pool="network") == 4  # a /28 holds four /30s
    with Client(server.socket) as c:
        handle = c.create().handle.decode()
        c.spawn(handle=handle, script="sleep 60")
        page = scrape.until(lambda p: p.requests("SpawnRequest") == 1)
        assert page.requests("CreateRequest") == 1
        assert 0 < page("warden_request_duration_seconds_sum", frontend="warden",
                        request="CreateRequest") < 60
        assert page("warden_containers", state="active") == 1
        assert page("warden_jobs_running") == 1
        assert page("warden_pool_in_use", pool="network") == 1
        assert page("warden_pool_in_use", pool="uid") == 1
        assert page("warden_depot_entries") == 1

        c.destroy(handle=handle)
    page = scrape.until(lambda p: p("warden_depot_entries") == 0, timeout=30)
    assert page.requests("DestroyRequest") == 1
    assert page("warden_containers", state="active") == 0
    assert page("warden_destroy_cleanups_pending") == 0
    assert page("warden_pool_in_use", pool="network") == 0
