"""A real server (real drivers from their entry points, the real kernel) per test, with its
own depot, socket, name prefix and network pool so that two runs never collide."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden_framework.client import Client
from warden_framework.config import settings_from_dict
from warden_framework.testing.process import ServerProcess
from warden_framework.testing.real_server import ROOTFS, WSHD, missing
from warden_framework.testing.real_server import server_config as real_server_config
from warden_framework.testing.server import running_server

# The shape every real-kernel test starts from lives in the kit (testing/real_server.py);
# the suite's modules import these names from here.
__all__ = ["ROOTFS", "WSHD", "_missing", "server_config", "server_settings"]
_missing = missing
server_config = real_server_config


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
