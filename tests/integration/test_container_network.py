"""Container networking through the whole server: veth, isolation, net_in, net_out and
bandwidth. Traffic goes only between the host and its own containers."""

import os
import socket
import threading

import pytest

from warden_framework.client import ServerError


def run(client, handle, script, **kw):
    return client.run(handle=handle, script=script.encode(), **kw)


def container_id(client, handle):
    return os.path.basename(client.info(handle=handle).container_path.decode())


def test_veth_pair_is_up_with_addresses(net_client):
    h = net_client.create().handle
    info = net_client.info(handle=h)
    cid = container_id(net_client, h)
    assert os.path.exists(f"/sys/class/net/w-{cid}-0")
    out = run(net_client, h, f"ip addr show w-{cid}-1; ip route", privileged=True).stdout.decode()
    assert f"inet {info.container_ip}/30" in out
    assert f"default via {info.host_ip}" in out


def test_net_in_reaches_a_server_in_the_container(net_client):
    h = net_client.create().handle
    info = net_client.info(handle=h)
    ports = net_client.net_in(handle=h, container_port=8080)
    assert ports.container_port == 8080 and ports.host_port != 8080
    job = net_client.spawn(handle=h, script=b"echo hello | nc -l -p 8080").job_id
    data = b""
    for _ in range(100):  # the listener starts asynchronously: retry the connect
        try:
            with socket.create_connection((info.host_ip, ports.host_port), timeout=2) as s:
                data = s.recv(100)
            if data:
                break
        except OSError:
            threading.Event().wait(0.05)
    assert data == b"hello\n"
    assert net_client.link(handle=h, job_id=job).exit_status == 0


def test_containers_cannot_reach_each_other_until_net_out(net_client):
    a, b = net_client.create().handle, net_client.create().handle
    b_ip = net_client.info(handle=b).container_ip
    probe = f"echo ping | nc -w 2 {b_ip} 9000"
    listen = net_client.spawn(handle=b, script=b"nc -l -p 9000 >/dev/null; nc -l -p 9000").job_id
    assert run(net_client, a, probe).exit_status != 0
    net_client.net_out(handle=a, network=b_ip, port=9000)
    results = [run(net_client, a, probe).exit_status for _ in range(20)]
    assert 0 in results
    net_client.stop(handle=b, kill=True)
    net_client.link(handle=b, job_id=listen)


def test_container_cannot_reach_host_by_default(net_client):
    h = net_client.create().handle
    info = net_client.info(handle=h)
    with socket.socket() as server:
        server.bind((info.host_ip, 0))
        server.listen()
        port = server.getsockname()[1]
        assert run(net_client, h, f"echo x | nc -w 2 {info.host_ip} {port}").exit_status != 0


def test_net_out_validation_texts(net_client):
    h = net_client.create().handle
    with pytest.raises(ServerError, match=r"^Please specify network, port, and/or port_range\.$"):
        net_client.net_out(handle=h)
    with pytest.raises(ServerError, match="^Port range maximum must be greater than minimum$"):
        net_client.net_out(handle=h, port_range="2002:2000")
    net_client.net_out(handle=h, network="10.0.0.0/8")


def test_bandwidth_reads_back(net_client):
    h = net_client.create().handle
    resp = net_client.limit_bandwidth(handle=h, rate=100000, burst=1000)
    assert (resp.rate, resp.burst) == (100000, 1000)
    stat = net_client.info(handle=h).bandwidth_stat
    assert (stat.in_rate, stat.in_burst, stat.out_rate, stat.out_burst) == (100000, 1000, 100000, 1000)


def test_destroy_removes_veth(warden_net, net_client):
    h = net_client.create().handle
    cid = container_id(net_client, h)
    net_client.destroy(handle=h)
    warden_net.call(warden_net.server.wait_cleanups)  # teardown_net runs after the answer
    assert not os.path.exists(f"/sys/class/net/w-{cid}-0")
