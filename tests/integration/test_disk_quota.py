"""Disk quotas through the server with the btrfs driver: each container's writable layer in
its own subvolume, limited by a qgroup; writes past the limit fail with EDQUOT."""

import pytest

from warden_framework.client import Client
from warden_framework.testing.server import running_server

from .conftest import _missing, server_settings


@pytest.fixture
def quota_client(tmp_path):
    if _missing():
        pytest.skip(_missing())
    settings = server_settings(
        tmp_path, drivers={"disk": "btrfs"}, quota={"disk_quota_enabled": True},
        plugins={"quota_disk": {"volumes": str(tmp_path / "volumes"),
                                "image": str(tmp_path / "volumes.img"), "image_size": 1 << 30}})
    with running_server(settings):
        with Client(settings.server.unix_domain_path) as c:
            yield c


def test_byte_limit_stops_writes_and_usage_is_reported(quota_client):
    c = quota_client
    h = c.create().handle
    assert c.limit_disk(handle=h).block_limit == 0
    resp = c.limit_disk(handle=h, byte_limit=8 * 1024 * 1024)
    assert resp.byte_limit == 8 * 1024 * 1024 and resp.block_limit == 8192
    before = c.info(handle=h).disk_stat.bytes_used
    ok = c.run(handle=h, script=b"dd if=/dev/zero of=/tmp/one bs=1M count=1 && sync")
    assert ok.exit_status == 0
    grown = c.info(handle=h).disk_stat.bytes_used - before
    assert 1024 * 1024 - 32000 <= grown <= 1024 * 1024 + 128 * 1024
    big = c.run(handle=h, script=b"dd if=/dev/zero of=/tmp/big bs=1M count=16 && sync")
    assert big.exit_status != 0 and b"quota exceeded" in big.stderr.lower()


def test_quota_is_per_container(quota_client):
    c = quota_client
    a, b = c.create().handle, c.create().handle
    c.limit_disk(handle=a, byte_limit=4 * 1024 * 1024)
    assert c.run(handle=b, script=b"dd if=/dev/zero of=/tmp/f bs=1M count=6 && sync").exit_status == 0
