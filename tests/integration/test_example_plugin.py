"""Issue 16 from outside: the third-party example examples/warden-tmpfs-rootfs, installed with
the core and the plugins a server needs into a fresh venv (no editable installs, no registry:
build/wheelhouse, filled by scripts/bootstrap.sh), passes the core's rootfs contract under that
venv's pytest, and is selected by config (`rootfs: tmpfs`) in that venv's warden-server, which
runs a job in a container on it. Nothing in the core names the example: it is found through its
entry point alone.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from warden_framework.client import Client
from warden_framework.testing.wheels import VenvServer, checkout_wheels, fresh_venv, run, wait_for

from .conftest import _missing, server_config

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]
WHEELHOUSE = TOP / "build" / "wheelhouse"
EXAMPLE = TOP / "examples" / "warden-tmpfs-rootfs"
EXAMPLE_PACKAGE = "warden_tmpfs_rootfs"


def _limits_plugin() -> str:
    """What `limits: auto` would choose here (config/warden.yml), named explicitly."""
    return "cgroup_v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "cgroup_v1"


def _projects() -> list[Path]:
    return [TOP, TOP / "plugins" / "wshd_exec", TOP / "plugins" / "iptables_net",
            TOP / "plugins" / _limits_plugin(), EXAMPLE]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv holding wheels of the core, wshd_exec, iptables_net, the limits plugin and
    the example, built from snapshots of the checkout, dependencies from the wheelhouse only."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    if not (WHEELHOUSE / ".stamp").exists():
        pytest.skip(f"no wheelhouse at {WHEELHOUSE} (run scripts/bootstrap.sh)")
    wheels = checkout_wheels(tmp_path_factory, TOP, _projects())
    work = tmp_path_factory.mktemp("example-plugin")
    return fresh_venv(work / "venv", WHEELHOUSE, [*wheels, "pytest"])


def _in_venv(venv: Path, code: str) -> str:
    """Run `code` with the venv's python outside the checkout (so nothing imports from it)."""
    return run([venv / "bin" / "python", "-c", code], cwd=venv)


def test_the_core_does_not_know_the_example(venv):
    """The tmpfs driver comes from the example's own distribution, and the installed core (a
    wheel, not the checkout) never imports it (a docstring may point at it as an example)."""
    found = json.loads(_in_venv(venv, (
        "import json, importlib.metadata as m, warden_framework, warden_tmpfs_rootfs\n"
        "print(json.dumps({'core': warden_framework.__file__,"
        " 'example': warden_tmpfs_rootfs.__file__,"
        " 'rootfs': sorted((e.name, e.dist.name) for e in"
        " m.entry_points(group='warden.drivers.rootfs'))}))")))
    core = Path(found["core"]).parent
    assert core.is_relative_to(venv) and Path(found["example"]).is_relative_to(venv)
    assert found["rootfs"] == [["tmpfs", "warden-tmpfs-rootfs"]]
    uses = re.compile(rf"^\s*(from|import)\s+{EXAMPLE_PACKAGE}\b|{EXAMPLE_PACKAGE}\.driver:",
                      re.MULTILINE)
    for path in core.rglob("*.py"):
        assert not uses.search(path.read_text()), path


def test_the_example_passes_the_rootfs_contract_under_the_venvs_pytest(venv, tmp_path):
    done = subprocess.run([str(venv / "bin" / "pytest"), "-q", str(EXAMPLE / "tests")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 0, summary
    assert not re.search(r"\d+ (failed|errors?)\b", summary), summary
    # its own pytest settings, not the checkout's
    assert f"rootdir: {EXAMPLE}" in run([venv / "bin" / "pytest", "--co", EXAMPLE / "tests"],
                                         cwd=tmp_path)


@pytest.fixture
def tmpfs_server(venv, tmp_path):
    """The venv's warden-server on a config of its own selecting `rootfs: tmpfs`; every
    container destroyed, the server stopped and its host state removed afterwards."""
    config = server_config(tmp_path, drivers={"rootfs": "tmpfs", "exec": "wshd",
                                              "network": "iptables", "limits": _limits_plugin(),
                                              "disk": None},
                           plugins={"tmpfs_rootfs": {"size": "64M"}})
    server = VenvServer(venv, config, tmp_path)
    try:
        server.start()
        yield server.socket, server.depot
    finally:
        server.stop_and_clean()
    left = server.leftovers()
    assert not left, f"the server left {left}"


def _mount_type(target: Path) -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == str(target):
                return right.split()[0]
    return None


def test_a_fresh_venv_server_runs_a_job_on_the_example_rootfs(tmpfs_server):
    socket, depot = tmpfs_server
    with Client(socket) as c:
        handle = c.create().handle
        (container_dir,) = list(depot.iterdir())
        root = container_dir / "rootfs"
        assert _mount_type(root) == "tmpfs"

        answer = c.run(handle=handle, script=b"echo hi > /f; cat /f", privileged=True)
        assert (answer.exit_status, answer.stdout, answer.stderr) == (0, b"hi\n", b"")

        # The job's file is on the host's tmpfs, owned by container root's host id.
        snapshot = json.loads((container_dir / "snapshot.json").read_text())
        host_base = snapshot["resources"]["id_map"][0]
        assert (root / "f").read_text() == "hi\n"
        assert ((root / "f").stat().st_uid, (root / "f").stat().st_gid) == (host_base, host_base)

        c.destroy(handle=handle)
        wait_for(lambda: not container_dir.exists(), f"{container_dir} to go")
        assert _mount_type(root) is None
        assert not c.list().handles
