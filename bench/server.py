"""Start a throwaway warden-server subprocess with its own depot, socket and prefix."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from warden_framework.client import Client

TOP = Path(__file__).resolve().parents[1]


@contextmanager
def bench_server(network: bool = True, **server_overrides) -> Iterator[str]:
    work = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    sock = str(work / "warden.sock")
    config = {
        "server": {"unix_domain_path": sock, "container_depot_path": str(work / "depot"),
                   "container_rootfs_path": str(TOP / "build" / "rootfs"),
                   "wshd_path": str(TOP / "native" / "wshd" / "wshd"),
                   "name_prefix": "wb" + secrets.token_hex(3), "container_grace_time": None,
                   **server_overrides},
        "health_check_server": {"port": None},
        "logging": {"level": "warn", "file": str(work / "server.log")},
        "network": {"pool_network": "10.244.0.0/22", "release_delay": 0},
        "user": {"pool_start_uid": 600000, "pool_size": 512},
        "quota": {"disk_quota_enabled": False},
        "drivers": {"rootfs": "overlayfs", "exec": "wshd", "limits": "cgroup_v1",
                    "network": "iptables" if network else None, "disk": None},
    }
    (work / "warden.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "warden_framework.server.main",
                             "--config", str(work / "warden.yml")])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with Client(sock) as c:
                    c.ping()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {work / 'server.log'}")
                time.sleep(0.05)
        yield sock
    finally:
        with Client(sock) as c:
            for h in c.list().handles:
                c.destroy(handle=h)
        proc.terminate()
        proc.wait(30)
        os.system(f"rm -rf {work}")
