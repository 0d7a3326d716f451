"""Issue 17 from outside: the wheels alone make a working server. Wheels of the core and the
default plugins, built from copies of the checkout (wshd_exec's a platform wheel holding
bin/wshd), go into a fresh venv from build/wheelhouse only (--no-index); that venv's
`warden-rootfs` builds the rootfs from the .deb cache, and its `warden-server`, on the packaged
default config with only what a test must own changed (paths, name prefix, pools, health port),
passes the protocol smoke test with the wshd from the wheel.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import sysconfig
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from warden_framework.client import Client
from warden_framework.config import load_settings, settings_to_yaml
from warden_framework.testing.wheels import VenvServer, checkout_wheels, fresh_venv, run, wait_for

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]
WHEELHOUSE = TOP / "build" / "wheelhouse"
DEB_CACHE = TOP / "build" / "debs"
PACKAGED_CONFIG = TOP / "warden_framework" / "data" / "warden.yml"
# The core and what the packaged config names: both limits drivers (`limits: auto` picks one).
PROJECTS = [TOP, *(TOP / "plugins" / name for name in (
    "rootfs_common", "overlayfs", "iptables_net", "cgroup_v1", "cgroup_v2", "wshd_exec",
    "quota_disk"))]
WSHD_MEMBER = "warden_wshd_exec/bin/wshd"


@dataclass
class Installed:
    venv: Path
    wheels: dict[str, Path]     # project directory name -> wheel file

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def python(self, code: str) -> str:
        """`code` under the venv's python, outside the checkout (nothing imports from it)."""
        return run([self.bin("python"), "-c", code], cwd=self.venv).strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    if os.geteuid() != 0:
        pytest.skip("needs root: warden-rootfs and the server make real kernel objects")
    if not (WHEELHOUSE / ".stamp").exists():
        pytest.skip(f"no wheelhouse at {WHEELHOUSE} (run scripts/bootstrap.sh)")
    started = time.monotonic()
    wheels = checkout_wheels(tmp_path_factory, TOP, PROJECTS)
    built = time.monotonic()
    venv = fresh_venv(tmp_path_factory.mktemp("pip-install") / "venv", WHEELHOUSE, wheels)
    print(f"wheels {built - started:.1f} s, venv {time.monotonic() - built:.1f} s")
    return Installed(venv, {p.name: w for p, w in zip(PROJECTS, wheels)})


@pytest.fixture(scope="module")
def rootfs(installed, tmp_path_factory) -> Path:
    """The default rootfs, built by the venv's `warden-rootfs` from the checkout's .deb cache."""
    if not shutil.which("dpkg-deb") or not any(DEB_CACHE.glob("*.deb")):
        pytest.skip(f"warden-rootfs needs dpkg-deb and the .debs in {DEB_CACHE} "
                    f"(run scripts/bootstrap.sh)")
    dest = tmp_path_factory.mktemp("pip-rootfs") / "rootfs"
    env = {**os.environ, "WARDEN_DEB_CACHE": str(DEB_CACHE)}
    run([installed.bin("warden-rootfs"), dest], cwd=dest.parent, env=env)
    assert os.access(dest / "bin" / "bash", os.X_OK) and (dest / "bin" / "busybox").exists()
    return dest


def test_the_wshd_exec_wheel_is_a_platform_wheel_holding_wshd(installed):
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    tags = {name: wheel.name.removesuffix(".whl").split("-")[-3:]
            for name, wheel in installed.wheels.items()}
    assert tags.pop("wshd_exec") == ["py3", "none", platform]
    assert all(tag == ["py3", "none", "any"] for tag in tags.values()), tags

    with zipfile.ZipFile(installed.wheels["wshd_exec"]) as wheel:
        member = wheel.getinfo(WSHD_MEMBER)
        packed = wheel.read(member)
    assert stat.S_IMODE(member.external_attr >> 16) == 0o755
    assert packed.startswith(b"\x7fELF")

    # The driver's default binary (server.wshd_path: null) is the installed copy of that file.
    default = Path(installed.python(
        "from warden_wshd_exec.binary import default_binary; print(default_binary())"))
    assert default.is_relative_to(installed.venv) and default.as_posix().endswith(WSHD_MEMBER)
    assert os.access(default, os.X_OK) and default.read_bytes() == packed


def test_print_config_without_argument_shows_the_packaged_default(installed, tmp_path):
    out = run([installed.bin("warden-server"), "--print-config"], cwd=tmp_path)
    header, _, body = out.partition("\n")
    packaged = Path(header.removeprefix("# effective configuration of "))
    assert packaged.is_relative_to(installed.venv), header
    assert packaged.read_bytes() == PACKAGED_CONFIG.read_bytes()
    assert body == settings_to_yaml(load_settings(PACKAGED_CONFIG))
    server = yaml.safe_load(body)["server"]
    for key in ("unix_domain_path", "container_rootfs_path", "container_depot_path", "pidfile"):
        assert Path(server[key]).is_absolute(), (key, server[key])
    assert server["wshd_path"] is None


def _own_config(installed: Installed, rootfs: Path, tmp_path: Path) -> dict:
    """The packaged default as the venv prints it, with only what this test must own changed."""
    config = yaml.safe_load(run([installed.bin("warden-server"), "--print-config"], cwd=tmp_path))
    subnet = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}"
    config["server"].update(
        unix_domain_path=str(tmp_path / "warden.sock"), pidfile=str(tmp_path / "warden.pid"),
        container_depot_path=str(tmp_path / "depot"), container_rootfs_path=str(rootfs),
        name_prefix="wt" + secrets.token_hex(3))
    config["network"].update(pool_network=f"{subnet}.0/28", pool_start_address=f"{subnet}.0",
                             pool_size=4)
    config["port"].update(pool_start_port=40000 + secrets.randbelow(20000), pool_size=1000)
    config["user"].update(pool_start_uid=10000 + secrets.randbelow(50000), pool_size=16,
                          namespace_start_uid=(1000 + secrets.randbelow(3000)) * 16 * 65536)
    config["health_check_server"]["port"] = None
    return config


@pytest.fixture
def server(installed, rootfs, tmp_path):
    config = _own_config(installed, rootfs, tmp_path)
    assert config["server"]["wshd_path"] is None and config["drivers"]["limits"] == "auto"
    server = VenvServer(installed.venv, config, tmp_path)
    try:
        yield server.start()
    finally:
        server.stop_and_clean()
    left = server.leftovers()
    assert not left, f"the server left {left}"


def _exe(path: Path | str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _net_in_answer(host_ip: str, port: int) -> bytes:
    """What a connect to host_ip:port reads; retried while the listener starts."""
    for _ in range(100):
        try:
            with socket.create_connection((host_ip, port), timeout=2) as s:
                data = s.recv(100)
            if data:
                return data
        except OSError:
            pass
        threading.Event().wait(0.05)
    return b""


def test_the_venvs_server_passes_the_protocol_smoke_test(installed, server, tmp_path):
    assert "auto chose cgroup_v" in server.log_text()
    with Client(server.socket) as c:
        c.ping()
        assert c.echo(message=b"hello").message == b"hello"

        handle = c.create().handle
        info = c.info(handle=handle)
        container = Path(info.container_path.decode())
        assert info.state == "active" and container.parent == server.depot
        assert info.host_ip and info.container_ip

        # The container's init is the wheel's wshd, not the checkout's.
        pid = int((container / "run" / "wshd.pid").read_text())
        bundled = installed.venv.glob(f"lib/python*/site-packages/{WSHD_MEMBER}")
        assert _exe(f"/proc/{pid}/exe") == _exe(next(bundled))
        assert Path(os.readlink(f"/proc/{pid}/exe")).is_relative_to(installed.venv)

        ran = c.run(handle=handle, script=b"echo hi")
        assert (ran.exit_status, ran.stdout, ran.stderr) == (0, b"hi\n", b"")

        job = c.spawn(handle=handle, script=b"sleep 0.2; echo late").job_id
        linked = c.link(handle=handle, job_id=job)
        assert (linked.exit_status, linked.stdout) == (0, b"late\n")

        job = c.spawn(handle=handle, script=b"echo out; echo err >&2; exit 3").job_id
        frames = list(c.stream(handle=handle, job_id=job))
        assert b"".join(f.data for f in frames if f.name == "stdout") == b"out\n"
        assert b"".join(f.data for f in frames if f.name == "stderr") == b"err\n"
        assert frames[-1].exit_status == 3

        ports = c.net_in(handle=handle, container_port=8080)
        listener = c.spawn(handle=handle, script=b"echo hello | nc -l -p 8080").job_id
        assert _net_in_answer(info.host_ip, ports.host_port) == b"hello\n"
        assert c.link(handle=handle, job_id=listener).exit_status == 0

        assert c.limit_memory(handle=handle, limit_in_bytes=64 << 20).limit_in_bytes == 64 << 20
        assert c.limit_memory(handle=handle).limit_in_bytes == 64 << 20

        src = tmp_path / "in"
        src.mkdir()
        (src / "data").write_bytes(os.urandom(4096))
        c.copy_in(handle=handle, src_path=f"{src}/", dst_path="/tmp/in")
        checked = c.run(handle=handle, script=b"wc -c < /tmp/in/data")
        assert checked.stdout.strip() == b"4096"
        c.copy_out(handle=handle, src_path="/tmp/in/", dst_path=str(tmp_path / "out"))
        assert (tmp_path / "out" / "data").read_bytes() == (src / "data").read_bytes()

        assert list(c.list().handles) == [handle]
        c.stop(handle=handle)
        assert c.info(handle=handle).state == "stopped"
        c.destroy(handle=handle)
        wait_for(lambda: not container.exists(), f"{container} to go")
        assert not c.list().handles
