"""Restart without loss: after a SIGKILL or a drain, containers, running jobs, their output,
net_in rules and pool reservations survive; dead containers are cleaned up completely."""

import os
import signal
import socket
import time

import pytest

from warden_framework.client import Client, ServerError
from warden_framework.protocol import pb

COUNT_SCRIPT = b"i=0; while [ $i -lt 30 ]; do echo $i; i=$((i+1)); sleep 0.05; done; exit 3"
EXPECTED = "".join(f"{i}\n" for i in range(30)).encode()


def connect_and_read(host, port, attempts=100):
    for _ in range(attempts):
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                data = s.recv(100)
            if data:
                return data
        except OSError:
            pass
        time.sleep(0.05)
    return b""


def prepare(c):
    a = c.create().handle
    job = c.spawn(handle=a, script=COUNT_SCRIPT).job_id
    b = c.create().handle
    ports = c.net_in(handle=b, container_port=7000)
    c.spawn(handle=b, script=b"while true; do echo served | nc -l -p 7000; done")
    info_a, info_b = c.info(handle=a), c.info(handle=b)
    return a, job, b, ports, info_a, info_b


@pytest.mark.parametrize("how", ["sigkill", "drain"])
def test_containers_and_jobs_survive_restart(server_process, how):
    srv = server_process
    with Client(srv.socket) as c:
        a, job, b, ports, info_a, info_b = prepare(c)
        first = next(iter(c.stream(handle=a, job_id=job)))  # a client already saw some output
        assert first.data
    if how == "sigkill":
        srv.kill()
    else:
        assert srv.drain() == 0
    srv.start()
    with Client(srv.socket) as c:
        assert set(c.list().handles) == {a, b}
        resp = c.link(handle=a, job_id=job)
        assert (resp.exit_status, resp.stdout) == (3, EXPECTED)
        with pytest.raises(ServerError, match="^no such job$"):
            c.link(handle=a, job_id=job)
        assert connect_and_read(info_b.host_ip, ports.host_port) == b"served\n"
        fresh = c.create().handle
        info = c.info(handle=fresh)
        assert info.container_ip not in (info_a.container_ip, info_b.container_ip)
        assert c.net_in(handle=fresh).host_port != ports.host_port


def test_dead_containers_are_cleaned_up_at_start(server_process):
    srv = server_process
    with Client(srv.socket) as c:
        keep = c.create().handle
        no_snapshot = c.create().handle
        dead_wshd = c.create().handle
        paths = {h: c.info(handle=h).container_path.decode() for h in (keep, no_snapshot, dead_wshd)}
    srv.kill()
    os.unlink(os.path.join(paths[no_snapshot], "snapshot.json"))
    pid = int(open(os.path.join(paths[dead_wshd], "run", "wshd.pid")).read())
    os.kill(pid, signal.SIGKILL)
    srv.start()
    with Client(srv.socket) as c:
        assert list(c.list().handles) == [keep]
    assert not os.path.exists(paths[no_snapshot]) and not os.path.exists(paths[dead_wshd])


def test_a_run_that_outlives_the_server_can_be_linked_after_restart(server_process):
    """A Run's job reaches the snapshot shortly after it starts (not before the request's
    reply, which only comes at its end): once there, a SIGKILL of the server loses nothing."""
    srv = server_process
    with Client(srv.socket) as c:
        handle = c.create().handle
    runner = Client(srv.socket)
    runner.connect()
    runner.write(pb.RunRequest(handle=handle, script=COUNT_SCRIPT))
    with Client(srv.socket) as c:
        deadline = time.monotonic() + 5
        while not c.info(handle=handle).job_ids and time.monotonic() < deadline:
            time.sleep(0.01)
        [job] = c.info(handle=handle).job_ids
    time.sleep(0.3)  # well past the flush that records it
    srv.kill()
    runner.disconnect()
    srv.start()
    with Client(srv.socket) as c:
        resp = c.link(handle=handle, job_id=job)
        assert (resp.exit_status, resp.stdout) == (3, EXPECTED)
