"""The one place a benchmark starts our server: a config with its own socket, depot, name
prefix and pools (by default sized for 250 live containers), run as a real subprocess by
ServerProcess."""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from warden_framework.testing.process import ServerProcess

TOP = Path(__file__).resolve().parents[1]
ROOTFS = TOP / "build" / "rootfs"
WSHD = TOP / "native" / "wshd" / "wshd"
# The pool's /30s start here; only used between the host and its containers.
POOL_START = ipaddress.IPv4Address("10.244.0.0")
# 256 /30s (a /22): 250 live containers plus a few.
DEFAULT_POOL = 256
STREAM_OUTPUT_LIMIT = 2 * 1024**3


def pool_network(pool: int) -> str:
    """The network holding `pool` /30s (a power of two) from POOL_START."""
    if pool < 1 or pool & (pool - 1):
        raise ValueError(f"bench: pool of {pool} containers: must be a power of two")
    return str(ipaddress.IPv4Network((POOL_START, 32 - 2 - pool.bit_length() + 1)))


def bench_config(workdir: Path, network: bool = True, checkout: Path | None = None,
                 pool: int = DEFAULT_POOL) -> dict:
    """The server's default drivers (iptables network unless `network` is False), no grace
    timer, no release delay, and job output up to 2 GiB for the stream measurement; networks
    for `pool` containers and somewhat more uids. For another `checkout` (an older commit:
    --baseline), its rootfs and wshd, and no key it may not know."""
    top = checkout or TOP
    user = {"pool_start_uid": 20000, "pool_size": pool + pool // 8 + 12}
    if checkout is None:
        user["namespace_start_uid"] = 3_000_000_000
    return {
        "server": {"unix_domain_path": str(workdir / "warden.sock"),
                   "container_depot_path": str(workdir / "depot"),
                   "container_rootfs_path": str(top / "build" / "rootfs"),
                   "wshd_path": str(top / "native" / "wshd" / "wshd"),
                   "name_prefix": "wb" + secrets.token_hex(3), "container_grace_time": None,
                   "job_output_limit": STREAM_OUTPUT_LIMIT},
        "health_check_server": {"port": None},
        "logging": {"level": "warn"},
        "network": {"pool_network": pool_network(pool), "release_delay": 0},
        "user": user,
        "quota": {"disk_quota_enabled": False},
        "drivers": {"rootfs": "overlayfs", "exec": "wshd", "limits": "cgroup_v1",
                    "network": "iptables" if network else None, "disk": None},
    }


@contextmanager
def bench_server(network: bool = True, checkout: Path | None = None,
                 pool: int = DEFAULT_POOL) -> Iterator[ServerProcess]:
    """A started server (of `checkout`, run by its .venv, when given) with networks for
    `pool` containers; on exit every container is destroyed and host state removed."""
    workdir = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    config = bench_config(workdir, network, checkout, pool)
    if checkout is None:
        server = ServerProcess(config, workdir)
    else:
        server = ServerProcess(config, workdir, python=str(checkout / ".venv" / "bin" / "python"))
    try:
        server.start()
        yield server
    finally:
        try:
            if server.proc is not None:
                server.stop_and_clean()
        finally:
            _remove_unless_mounted(workdir)


def _remove_unless_mounted(workdir: Path) -> None:
    """Never delete through a container root that a failed destroy left mounted."""
    with open("/proc/self/mounts") as f:
        mounted = [line.split()[1] for line in f if line.split()[1].startswith(str(workdir))]
    if mounted:
        print(f"bench: left {workdir} in place: still mounted: {', '.join(mounted)}")
        return
    shutil.rmtree(workdir, ignore_errors=True)
