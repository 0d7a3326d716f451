"""Garden front end tests: a server with both front ends, on fake drivers (in a thread) or on
the real kernel (a subprocess, as tests/integration does)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from warden_framework.client import Client
from warden_framework.server.listener import WardenServer
from warden_framework.testing.fakes import FAKE_DRIVERS
from warden_framework.testing.server import fake_settings, running_server
from warden_garden_api.frontend import GardenFrontEnd

sys.path.insert(0, str(Path(__file__).parent))
from garden_client import GardenClient  # noqa: E402


@pytest.fixture
def garden_options():
    """The Garden front end's options besides its address (a test may override this)."""
    return {}


@pytest.fixture
def fake_garden(tmp_path, garden_options):
    """(server thread, GardenClient, warden socket path) on fake drivers."""
    address = str(tmp_path / "garden.sock")
    settings = fake_settings(tmp_path, frontends={
        "warden": {}, "garden": {"listen_address": address, **garden_options}})
    classes = {"warden": WardenServer, "garden": GardenFrontEnd}
    with running_server(settings, FAKE_DRIVERS, frontends=classes) as srv:
        yield srv, GardenClient(address), settings.server.unix_domain_path


@pytest.fixture
def garden(fake_garden):
    """(server thread, GardenClient, handle of a container made through the Warden protocol)."""
    srv, client, warden_socket = fake_garden
    with Client(warden_socket) as warden:
        handle = warden.create().handle.decode()
    return srv, client, handle
