"""The whole server over its unix socket with in-memory fake drivers: protocol behaviour,
ordering, error texts, bad input, grace time and drain. Jobs run in the host's bash."""

import os
import socket
import threading
import time

import pytest

from warden_framework import hookimpl
from warden_framework.client import Client, ServerError
from warden_framework.jobs import READ_CHUNK
from warden_framework.protocol import frame_message, pb
from warden_framework.server import short_run
from warden_framework.testing.fakes import FAKE_DRIVERS, _Fake
from warden_framework.testing.server import ServerThread, fake_settings, running_server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    _Fake.fail_on = set()
    settings = fake_settings(
        tmp_path, server={"job_output_limit": 1000, "pidfile": str(tmp_path / "w.pid")},
        health_check_server={"port": free_port()})
    with running_server(settings, FAKE_DRIVERS) as srv:
        yield srv


@pytest.fixture
def client(server):
    with Client(server.settings.server.unix_domain_path) as c:
        yield c


def test_ping_echo_list(client):
    assert isinstance(client.ping(), pb.PingResponse)
    assert client.echo(message=b"\xff\x00hi").message == b"\xff\x00hi"
    assert list(client.list().handles) == []


def test_create_info_destroy(client):
    handle = client.create(handle=b"\xc2\x82").handle
    assert handle == b"\xc2\x82"
    assert list(client.list().handles) == [b"\xc2\x82"]
    info = client.info(handle=handle)
    assert info.state == "active" and info.host_ip == "10.98.0.1" and info.container_ip == "10.98.0.2"
    client.destroy(handle=handle)
    with pytest.raises(ServerError, match="^unknown handle$"):
        client.destroy(handle=handle)


def test_run_returns_output_and_status(client):
    h = client.create().handle
    resp = client.run(handle=h, script=b"echo out; echo err >&2; exit 3")
    assert (resp.exit_status, resp.stdout, resp.stderr) == (3, b"out\n", b"err\n")
    assert resp.info.state == "active"


def test_spawn_then_link_from_another_connection(server, client):
    h = client.create().handle
    job = client.spawn(handle=h, script=b"sleep 0.2; printf done").job_id
    client.disconnect()
    with Client(server.settings.server.unix_domain_path) as other:
        resp = other.link(handle=h, job_id=job)
        assert resp.stdout == b"done" and resp.exit_status == 0
        with pytest.raises(ServerError, match="^no such job$"):
            other.link(handle=h, job_id=job)


def test_stream_yields_chunks_then_terminal(client):
    h = client.create().handle
    job = client.spawn(handle=h, script=b"echo 1; sleep 0.1; echo 2 >&2; exit 4").job_id
    frames = list(client.stream(handle=h, job_id=job))
    out = b"".join(f.data for f in frames if f.name == "stdout")
    err = b"".join(f.data for f in frames if f.name == "stderr")
    assert (out, err) == (b"1\n", b"2\n")
    assert frames[-1].exit_status == 4 and not frames[-1].HasField("name")


def test_output_limit_kills_job_and_adds_event(client):
    h = client.create().handle
    resp = client.run(handle=h, script=b"while true; do echo BLABLABLABLA; done")
    assert resp.exit_status == 255
    # What was buffered when the limit passed: at most one read chunk more (facts §12.2).
    assert len(resp.stdout) + len(resp.stderr) <= 1000 + READ_CHUNK
    assert "command exceeded maximum output" in list(resp.info.events)


def test_discard_output(client):
    h = client.create().handle
    resp = client.run(handle=h, script=b"echo hidden", discard_output=True)
    assert resp.exit_status == 0 and resp.stdout == b""


def test_state_error_and_unknown_handle(client):
    h = client.create().handle
    client.stop(handle=h)
    with pytest.raises(ServerError, match="^Container state must be one of 'active', current state is 'stopped'$"):
        client.run(handle=h, script=b"true")
    with pytest.raises(ServerError, match="^unknown handle$"):
        client.info(handle=b"nope")


def test_requests_on_one_connection_answered_in_order(server):
    path = server.settings.server.unix_domain_path
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        msgs = [pb.EchoRequest(message=str(i).encode()) for i in range(50)]
        s.sendall(b"".join(frame_message(m) for m in msgs))
        with Client(path) as reader_client:
            pass
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"\r\n") < 100 and time.monotonic() < deadline:
            data += s.recv(65536)
        assert data.count(b"\r\n") == 100
        texts = [str(i).encode() for i in range(50)]
        positions = [data.find(b"\x0a\x01" + t if len(t) == 1 else b"\x0a\x02" + t) for t in texts]
        assert positions == sorted(positions) and -1 not in positions


def test_garbage_closes_only_that_connection(server, client):
    path = server.settings.server.unix_domain_path
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b"abc\r\nxyz\r\n")
        reply = s.recv(4096)
        assert reply  # an ErrorResponse frame, then the close
        s.settimeout(5)
        while s.recv(4096):
            pass
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b"99999999999\r\n")
        assert b"exceeds the maximum" in s.recv(4096)
    assert isinstance(client.ping(), pb.PingResponse)


def test_health_check(server):
    with socket.create_connection(("127.0.0.1", server.settings.health_check_server.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")


def test_pidfile_written(server):
    import os
    assert open(server.settings.server.pidfile).read().strip() == str(os.getpid())


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_grace_time_destroys_unreferenced_container(server):
    path = server.settings.server.unix_domain_path
    with Client(path) as a:
        a.create(grace_time=0)
    assert wait_until(lambda: server.orchestrator.handles() == [])


def test_grace_time_spares_referenced_container(server):
    path = server.settings.server.unix_domain_path
    holder = Client(path)
    holder.connect()
    try:
        with Client(path) as a:
            h = a.create(grace_time=1).handle
        holder.info(handle=h)  # naming the handle makes holder a reference
        time.sleep(1.3)  # a negative check: longer than the grace time, nothing may fire
        assert h in list(holder.list().handles)
    finally:
        holder.disconnect()
    assert wait_until(lambda: server.orchestrator.handles() == [])


class HoldTeardownFs:
    """Blocks teardown_fs until `release` is set: the cleanup after a destroy is pending."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    @hookimpl(wrapper=True, specname="teardown_fs")
    def hold(self, container):
        self.entered.set()
        self.release.wait(30)
        return (yield)


def test_destroy_answers_before_cleanup_and_stop_waits_for_it(tmp_path):
    settings = fake_settings(tmp_path, network={"pool_network": "10.98.0.0/29"})
    hold = HoldTeardownFs()
    srv = ServerThread(settings, FAKE_DRIVERS, [hold]).start()
    try:
        with Client(settings.server.unix_domain_path) as c:
            h = c.create(handle="h").handle
            c.destroy(handle=h)  # answered while the cleanup is held in teardown_fs
            assert hold.entered.wait(30)
            assert list(c.list().handles) == []
            assert c.create(handle="h").handle == b"h"  # the handle is free at once
            assert len(os.listdir(settings.depot)) == 2  # the old directory is still there
            assert len(srv.orchestrator.pools.network) == 0  # and its network still reserved
            c.destroy(handle="h")
    finally:
        hold.release.set()
        srv.stop()  # drain and close wait for every pending cleanup
    assert os.listdir(settings.depot) == []
    assert len(srv.orchestrator.pools.network) == 2


class ConcurrencyProbe:
    """Counts how many setup_fs calls (so creates) run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0

    @hookimpl(wrapper=True)
    def setup_fs(self, container, settings):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)  # long enough for the six creates to overlap
        try:
            return (yield)
        finally:
            with self.lock:
                self.running -= 1


def test_creates_run_at_most_one_per_cpu_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    probe = ConcurrencyProbe()
    settings = fake_settings(tmp_path)
    with running_server(settings, FAKE_DRIVERS, extra_plugins=[probe]):
        def create():
            with Client(settings.server.unix_domain_path) as c:
                c.create()
        threads = [threading.Thread(target=create) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert probe.most == 2


def test_a_run_answer_bigger_than_the_socket_takes_arrives_whole(tmp_path, monkeypatch):
    """A Run's answer is written by the worker thread as far as the socket takes it and the
    rest by the loop: the client still reads one whole frame, then the next answer."""
    settings = fake_settings(tmp_path, server={"job_output_limit": 8 << 20})
    with running_server(settings, FAKE_DRIVERS) as srv:
        monkeypatch.setattr(short_run, "RUN_LINGER", 10.0)  # the fake's bash surely ends within it
        with Client(settings.server.unix_domain_path) as c:
            h = c.create().handle
            resp = c.run(handle=h, script=b"head -c 3000000 /dev/zero | tr '\\0' x; echo done >&2")
            assert resp.stdout == b"x" * 3000000 and resp.stderr == b"done\n"
            assert c.echo(message="next").message == b"next"


def test_a_lent_socket_writes_until_closed_and_closes_once():
    ours, client = socket.socketpair()
    with ours, client:
        lent = short_run.Loan(os.dup(ours.fileno()))
        assert lent.write_some(b"hi") == 2 and client.recv(2) == b"hi"
        lent.close()
        lent.close()  # harmless
        assert lent.write_some(b"more") == 0
        ours.sendall(b"still open")  # the loan was a duplicate: the socket itself lives on
        assert client.recv(10) == b"still open"
