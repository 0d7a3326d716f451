"""What one client may hold: stalled partial frames are closed and their memory freed, and
connections past server.max_connections are closed at once; other clients keep working."""

import socket
import time

import pytest

from warden_framework.client import Client
from warden_framework.testing.process import ServerProcess

from .conftest import _missing, server_config

FRAME = 16 * 1024 * 1024
SENT = 4 * 1024 * 1024  # of each frame, before the client stalls


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _closed(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionError:
        return True


@pytest.fixture
def small_server(tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    srv = ServerProcess(server_config(tmp_path, server={"max_connections": 40}), tmp_path)
    srv.start()
    yield srv
    srv.stop_and_clean()


def test_stalled_partial_frames_are_closed_and_memory_freed(small_server):
    srv = small_server
    pid = srv.proc.pid
    before = _rss_kib(pid)
    stalled = []
    for _ in range(32):
        s = socket.socket(socket.AF_UNIX)
        s.connect(srv.socket)
        s.sendall(f"{FRAME}\r\n".encode() + b"\0" * SENT)
        stalled.append(s)
    with Client(srv.socket) as c:  # a normal client meanwhile
        assert c.ping() is not None
        h = c.create().handle
        assert c.run(handle=h, script=b"echo ok").stdout == b"ok\n"
    assert all(_closed(s, 10) for s in stalled)
    for s in stalled:
        s.close()
    time.sleep(0.5)
    assert _rss_kib(pid) - before < 64 * 1024  # not the 128 MiB the clients sent


def test_connections_past_the_limit_are_closed_at_once(small_server):
    srv = small_server
    held = []
    for _ in range(40):  # each answered once, so the server counts all 40
        c = Client(srv.socket)
        c.connect()
        c.ping()
        held.append(c)
    extra = socket.socket(socket.AF_UNIX)
    extra.connect(srv.socket)
    assert _closed(extra, 5)
    extra.close()
    for c in held[:5]:
        c.disconnect()
    time.sleep(0.2)
    with Client(srv.socket) as c:
        assert c.ping() is not None
    for c in held[5:]:
        c.disconnect()
