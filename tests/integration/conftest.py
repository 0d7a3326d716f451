"""A real server (real drivers from their entry points, the real kernel) per test, with its
own depot, socket, name prefix and network pool so that two runs never collide."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from warden_framework.client import Client
from warden_framework.config import settings_from_dict
from warden_framework.testing.process import ServerProcess
from warden_framework.testing.server import running_server

TOP = Path(__file__).resolve().parents[2]
ROOTFS = TOP / "build" / "rootfs"
WSHD = TOP / "native" / "wshd" / "wshd"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root: containers are made in the real kernel"
    if not (ROOTFS / "bin" / "bash").exists():
        return f"no default rootfs at {ROOTFS} (run scripts/bootstrap.sh)"
    if not os.access(WSHD, os.X_OK):
        return f"no wshd binary at {WSHD} (run scripts/bootstrap.sh)"
    return None


def server_config(tmp_path: Path, **overrides) -> dict:
    """A config dict with this run's own socket, depot, name prefix, pools."""
    prefix = "wt" + secrets.token_hex(3)
    subnet = secrets.randbelow(200) + 20
    data = {
        "server": {"unix_domain_path": str(tmp_path / "warden.sock"),
                   "container_depot_path": str(tmp_path / "depot"),
                   "container_rootfs_path": str(ROOTFS), "wshd_path": str(WSHD),
                   "name_prefix": prefix, "container_grace_time": None,
                   "job_output_limit": 100 * 1024},
        "health_check_server": {"port": None},
        "network": {"pool_network": f"10.{subnet}.{secrets.randbelow(250)}.0/28", "release_delay": 0},
        "port": {"pool_start_port": 40000 + secrets.randbelow(20000), "pool_size": 1000},
        # Host ranges of this run's own: 16 containers' worth at a random 2^20 boundary.
        "user": {"pool_start_uid": 10000 + secrets.randbelow(50000), "pool_size": 16,
                 "namespace_start_uid": (1000 + secrets.randbelow(3000)) * 16 * 65536},
        "quota": {"disk_quota_enabled": False},
        "drivers": {"rootfs": "overlayfs", "exec": "wshd", "limits": "auto",
                    "network": None, "disk": None},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return data


def server_settings(tmp_path: Path, **overrides):
    return settings_from_dict(server_config(tmp_path, **overrides))


@pytest.fixture
def server_process(tmp_path):
    """A warden-server subprocess with networking; cleaned up completely afterwards."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    srv = ServerProcess(server_config(tmp_path, drivers={"network": "iptables"}), tmp_path)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop_and_clean()


@pytest.fixture
def warden(tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    settings = server_settings(tmp_path)
    with running_server(settings) as srv:
        yield srv


@pytest.fixture
def warden_net(tmp_path):
    """A server with the iptables network driver (chains with the run's own prefix)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    settings = server_settings(tmp_path, drivers={"network": "iptables"})
    with running_server(settings) as srv:
        yield srv


@pytest.fixture
def net_client(warden_net):
    with Client(warden_net.settings.server.unix_domain_path) as c:
        yield c


@pytest.fixture
def client(warden):
    with Client(warden.settings.server.unix_domain_path) as c:
        yield c
