"""Configuration of a real server for tests on the real kernel, in a checkout: the checkout's
default rootfs and wshd, and this run's own socket, depot, name prefix, network pool, port
pool and user-namespace ranges, so two runs (or two tests) never collide and the leak checker
can tell whose objects are whose. The integration suite, the plugins' real-kernel tests and
their servers (testing.process.ServerProcess) all start from it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
ROOTFS = CHECKOUT / "build" / "rootfs"
WSHD = CHECKOUT / "native" / "wshd" / "wshd"


def missing() -> str | None:
    """Why a real server cannot run here (print it with the skip), or None."""
    if os.geteuid() != 0:
        return "needs root: containers are made in the real kernel"
    if not (ROOTFS / "bin" / "bash").exists():
        return f"no default rootfs at {ROOTFS} (run scripts/bootstrap.sh)"
    if not os.access(WSHD, os.X_OK):
        return f"no wshd binary at {WSHD} (run scripts/bootstrap.sh)"
    return None


def server_config(workdir: Path, prefix: str = "wt", **overrides: dict) -> dict:
    """A config with `workdir`'s own socket and depot, a name prefix of `prefix` and six
    random hex digits, random small pools, no network or disk driver, no grace timer; each
    of `overrides` updates a section (drivers={"network": "iptables"})."""
    subnet = secrets.randbelow(200) + 20
    data = {
        "server": {"unix_domain_path": str(workdir / "warden.sock"),
                   "container_depot_path": str(workdir / "depot"),
                   "container_rootfs_path": str(ROOTFS), "wshd_path": str(WSHD),
                   "name_prefix": prefix + secrets.token_hex(3), "container_grace_time": None,
                   "job_output_limit": 100 * 1024},
        "health_check_server": {"port": None},
        "network": {"pool_network": f"10.{subnet}.{secrets.randbelow(250)}.0/28",
                    "release_delay": 0},
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
