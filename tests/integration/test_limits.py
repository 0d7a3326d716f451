"""Memory limits with OOM events and cpu shares through the server (facts §4.7, §5.6, §5.7)."""

import os
import time
from pathlib import Path

import pytest

from warden_framework.client import Client
from warden_framework.drivers.auto import mount_type
from warden_framework.testing.server import running_server

from .conftest import _missing, server_settings


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_job_past_memory_limit_is_killed_and_container_stopped(client):
    h = client.create().handle
    bystander = client.create().handle
    client.limit_memory(handle=h, limit_in_bytes=32 * 1024 * 1024)
    resp = client.run(handle=h, script=b"head -c 100m /dev/zero | tail > /dev/null")
    assert resp.exit_status != 0
    wait_for(lambda: client.info(handle=h).state == "stopped")
    assert "out of memory" in list(client.info(handle=h).events)
    # the other container is unaffected
    other = client.info(handle=bystander)
    assert other.state == "active" and not list(other.events)
    assert client.run(handle=bystander, script=b"echo fine").stdout == b"fine\n"


def test_dev_shm_counts_against_the_limit(client):
    h = client.create().handle
    client.limit_memory(handle=h, limit_in_bytes=32 * 1024 * 1024)
    assert client.run(handle=h, script=b"dd if=/dev/zero of=/dev/shm/f bs=1M count=16").exit_status == 0
    assert client.info(handle=h).state == "active"
    client.run(handle=h, script=b"dd if=/dev/zero of=/dev/shm/g bs=1M count=40")
    wait_for(lambda: "out of memory" in list(client.info(handle=h).events))


def test_limit_below_usage_is_refused_and_kept(client):
    h = client.create().handle
    client.limit_memory(handle=h, limit_in_bytes=64 * 1024 * 1024)
    client.spawn(handle=h, script=b"dd if=/dev/zero of=/dev/shm/f bs=1M count=24; sleep 100")
    wait_for(lambda: client.info(handle=h).memory_stat.cache >= 20 * 1024 * 1024)
    try:
        client.limit_memory(handle=h, limit_in_bytes=4 * 1024 * 1024)
    except Exception as exc:
        assert "Failed setting memory limit" in str(exc)
    else:
        raise AssertionError("a limit below usage was accepted")
    assert client.limit_memory(handle=h).limit_in_bytes == 64 * 1024 * 1024


def test_oom_watch_survives_restart(server_process):
    srv = server_process
    with Client(srv.socket) as c:
        h = c.create().handle
        c.limit_memory(handle=h, limit_in_bytes=32 * 1024 * 1024)
    srv.kill()
    srv.start()
    with Client(srv.socket) as c:
        c.run(handle=h, script=b"head -c 100m /dev/zero | tail > /dev/null")
        wait_for(lambda: c.info(handle=h).state == "stopped")
        assert "out of memory" in list(c.info(handle=h).events)
        assert c.limit_memory(handle=h).limit_in_bytes == 32 * 1024 * 1024


# limits: auto takes cgroup_v2 on a unified host: one hierarchy, whose /proc/<pid>/cgroup
# line "0::<path>" names no controller.
UNIFIED = mount_type("/sys/fs/cgroup") == "cgroup2"
LIMITED = ("",) if UNIFIED else ("cpu", "cpuacct", "memory", "devices")


def _cgroup_paths(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup (hierarchy-id:controllers:path) as controller -> path ("" for the
    unified hierarchy)."""
    return {ctrl: path for _, ctrls, path in (line.split(":", 2) for line in text.splitlines())
            for ctrl in ctrls.split(",")}


def test_jobs_are_born_in_the_containers_cgroups(client):
    """Seen from the host, a job sits in the container's groups; seen from inside, its
    cgroup namespace shows only "/" (the host's hierarchy stays hidden)."""
    h = client.create().handle
    path = Path(client.info(handle=h).container_path.decode())
    inside = client.run(handle=h, script=b"cat /proc/self/cgroup").stdout.decode()
    assert {_cgroup_paths(inside)[c] for c in LIMITED} == {"/"}, inside
    client.spawn(handle=h, script=b"exec sleep 60")
    init = int((path / "run" / "wshd.pid").read_text())
    deadline = time.monotonic() + 10
    while True:
        kids = Path(f"/proc/{init}/task/{init}/children").read_text().split()
        sleeping = [k for k in kids if Path(f"/proc/{k}/comm").read_text().strip() == "sleep"]
        if sleeping or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    paths = _cgroup_paths(Path(f"/proc/{sleeping[0]}/cgroup").read_text())
    for ctrl in LIMITED:
        assert paths[ctrl].endswith("/" + path.name), paths


def test_container_rlimits_from_config_apply_to_every_job(tmp_path):
    if _missing():
        pytest.skip(_missing())
    settings = server_settings(tmp_path, server={"container_rlimits": {"nofile": 2048}})
    with running_server(settings), Client(settings.server.unix_domain_path) as c:
        h = c.create().handle
        assert c.run(handle=h, script=b"ulimit -n").stdout == b"2048\n"
        assert c.run(handle=h, script=b"ulimit -n", rlimits={"nofile": 1234}).stdout == b"1234\n"
        assert c.run(handle=h, script=b"ulimit -n").stdout == b"2048\n"  # no leak into later jobs


def test_fork_bomb_as_container_root_stops_at_the_pids_limit(tmp_path):
    """A privileged fork loop (container root, so RLIMIT_NPROC does not hold it) stays within
    server.container_pids_limit; another container still runs jobs; destroy cleans it all."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    settings = server_settings(tmp_path, server={"container_pids_limit": 64})
    with running_server(settings) as srv, Client(settings.server.unix_domain_path) as c:
        bomb, other = c.create().handle, c.create().handle
        bomb_id = os.path.basename(c.info(handle=bomb).container_path.decode())
        c.spawn(handle=bomb, privileged=True, discard_output=True,
                script=b"f() { f & f & wait; }; f")
        wait_for(lambda: c.info(handle=bomb).pid_stat.current >= 60)
        stat = c.info(handle=bomb).pid_stat
        assert stat.limit == 64 and stat.current <= 64
        assert c.run(handle=other, script=b"echo fine").stdout == b"fine\n"
        time.sleep(0.5)  # the loop keeps forking meanwhile
        assert c.info(handle=bomb).pid_stat.current <= 64
        c.destroy(handle=bomb)
        srv.call(srv.server.wait_cleanups)
        pids = "" if UNIFIED else "pids"
        group = Path(settings.server.cgroup_root, pids, settings.server.name_prefix, bomb_id)
        assert not group.exists()
        assert c.run(handle=other, script=b"echo still").stdout == b"still\n"
