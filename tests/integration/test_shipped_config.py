"""The shipped config/warden.yml as a server starts from it, with only what must be this
test's own changed (socket, depot, pidfile, name prefix, pools, health port): its drivers,
`limits: auto` among them, choose for this host. On this development machine that is
cgroup_v1; in the pure cgroup v2 guest (tests/guest) it is cgroup_v2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from warden_framework.client import Client
from warden_framework.drivers.auto import mount_type
from warden_framework.testing.process import ServerProcess

from .conftest import ROOTFS, WSHD, _missing, server_config

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "warden.yml"


def shipped_config(tmp_path: Path) -> dict:
    config = yaml.safe_load(SHIPPED.read_text())
    own = server_config(tmp_path)  # this test's socket, depot, prefix, pools
    config["server"].update(
        unix_domain_path=own["server"]["unix_domain_path"],
        container_depot_path=own["server"]["container_depot_path"],
        container_rootfs_path=str(ROOTFS), wshd_path=str(WSHD),
        pidfile=str(tmp_path / "warden.pid"), name_prefix=own["server"]["name_prefix"],
        unix_domain_group=None)
    config["network"] = {**config["network"], **own["network"]}
    config["network"].pop("pool_start_address", None)
    config["network"].pop("pool_size", None)
    config["port"] = own["port"]
    config["user"] = {**config["user"], **own["user"]}
    config["health_check_server"] = {"port": None}
    return config


def test_the_shipped_drivers_start_here_and_limits_auto_says_what_it_chose(tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    config = shipped_config(tmp_path)
    assert config["drivers"]["limits"] == "auto"
    expected = "cgroup_v2" if mount_type("/sys/fs/cgroup") == "cgroup2" else "cgroup_v1"
    srv = ServerProcess(config, tmp_path)
    try:
        srv.start()
        with Client(srv.socket) as c:
            handle = c.create().handle
            c.limit_memory(handle=handle, limit_in_bytes=64 << 20)
            vcap = config["user"]["pool_start_uid"]  # the first container takes the first uid
            out = c.run(handle=handle, script=b"id -u; echo $((6 * 7))").stdout
            assert out == f"{vcap}\n42\n".encode()
            assert c.info(handle=handle).memory_stat.hierarchical_memory_limit == 64 << 20
            c.destroy(handle=handle)
        assert f"drivers.limits: auto chose {expected}" in srv.log_tail(200)
    finally:
        srv.stop_and_clean()
