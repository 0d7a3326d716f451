"""`warden-rootfs DEST` builds the default rootfs where a pip or Debian user asks for it, from
the Debian packages (here from the checkout's .deb cache, so the test reaches no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
DEBS = Path(__file__).resolve().parents[2] / "build" / "debs"


def build(dest: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WARDEN_DEB_CACHE": str(DEBS)}
    return subprocess.run([sys.executable, "-m", "warden_framework.rootfs", str(dest)],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def cached_debs():
    if os.geteuid() != 0:
        pytest.skip("warden-rootfs needs root")
    if not list(DEBS.glob("bash-static_*.deb")):
        pytest.skip(f"no .deb cache in {DEBS} (scripts/bootstrap.sh fills it)")
    return DEBS


def test_warden_rootfs_builds_a_root_that_runs_bash_and_busybox(cached_debs, tmp_path):
    dest = tmp_path / "rootfs"
    done = build(dest)
    assert done.returncode == 0, done.stderr
    ran = subprocess.run(["chroot", str(dest), "/bin/bash", "-c", "echo $BASH_VERSION; ls /bin | wc -l"],
                         capture_output=True, text=True, timeout=30)
    version, tools = ran.stdout.split()
    assert ran.returncode == 0 and version[0].isdigit() and int(tools) > 50
    stamp = (dest / ".warden-rootfs").read_text()
    again = build(dest)  # idempotent: nothing to do, the same tree
    assert again.returncode == 0 and (dest / ".warden-rootfs").read_text() == stamp


def test_warden_rootfs_refuses_without_root(tmp_path):
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "warden_framework.rootfs", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "must run as root" in done.stderr
