"""The installed plugin in a real warden-server process on the real kernel (overlayfs, wshd,
the host's cgroups): found through its `warden.plugins` entry point alone, it serves /metrics
that follow a real container's create, job and destroy."""

from __future__ import annotations

import importlib.metadata
import os
import secrets
from pathlib import Path

import pytest

from warden_framework.client import Client
from warden_framework.plugins import EXTRA_PLUGINS_GROUP
from warden_framework.testing.process import ServerProcess

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[3]
ROOTFS = TOP / "build" / "rootfs"
WSHD = TOP / "native" / "wshd" / "wshd"


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root: containers are made in the real kernel"
    if not (ROOTFS / "bin" / "bash").exists():
        return f"no default rootfs at {ROOTFS} (run scripts/bootstrap.sh)"
    if not os.access(WSHD, os.X_OK):
        return f"no wshd binary at {WSHD} (run scripts/bootstrap.sh)"
    if "metrics" not in {ep.name for ep in importlib.metadata.entry_points(group=EXTRA_PLUGINS_GROUP)}:
        return "warden-metrics is not installed in this venv (pip install -e plugins/metrics)"
    return None


def config(tmp_path: Path, health_port: int) -> dict:
    """The integration suite's shape (tests/integration/conftest.py): this run's own socket,
    depot, name prefix and pools; no network driver, the limits driver the host has."""
    return {
        "server": {"unix_domain_path": str(tmp_path / "warden.sock"),
                   "container_depot_path": str(tmp_path / "depot"),
                   "container_rootfs_path": str(ROOTFS), "wshd_path": str(WSHD),
                   "name_prefix": "wt" + secrets.token_hex(3), "container_grace_time": None},
        "health_check_server": {"port": health_port},
        "network": {"pool_network": f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.0/28",
                    "release_delay": 0},
        "port": {"pool_start_port": 40000 + secrets.randbelow(20000), "pool_size": 1000},
        "user": {"pool_start_uid": 10000 + secrets.randbelow(50000), "pool_size": 16,
                 "namespace_start_uid": (1000 + secrets.randbelow(3000)) * 16 * 65536},
        "quota": {"disk_quota_enabled": False},
        "drivers": {"rootfs": "overlayfs", "exec": "wshd", "limits": "auto",
                    "network": None, "disk": None},
    }


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
