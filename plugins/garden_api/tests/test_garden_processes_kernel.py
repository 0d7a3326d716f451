"""Run and Attach on the real kernel (garden-api.md §5): a warden-server subprocess with both
front ends and the wshd exec driver; containers made through the Warden protocol, processes
run through Garden's. What only the kernel shows: users, rlimits, a TTY and its window size,
a process that outlives a server restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from garden_client import GardenClient
from test_garden_processes import ATTACH, exit_message, output, read_until, run

from warden_framework.client import Client
from warden_framework.drivers.exec import ExecDriver
from warden_framework.testing import real_server
from warden_framework.testing.process import ServerProcess
from warden_framework.testing.real_server import server_config

pytestmark = pytest.mark.integration



def missing() -> str | None:
    from warden_wshd_exec.driver import WshdDriver
    if WshdDriver.resize_tty is ExecDriver.resize_tty:
        return "the wshd exec driver has no Garden processes yet (no resize_tty of its own)"
    return real_server.missing()


def config(workdir: Path) -> dict:
    """The kit's real-server shape, no network driver, and both front ends."""
    return server_config(workdir, frontends={
        "warden": {}, "garden": {"listen_address": str(workdir / "garden.sock")}})


def start_server(workdir: Path) -> ServerProcess:
    reason = missing()
    if reason:
        pytest.skip(reason)
    return ServerProcess(config(workdir), workdir)


@pytest.fixture
def server(tmp_path):
    """A server of the test's own: its host state (parent cgroups) goes with it."""
    srv = start_server(tmp_path)
    try:
        yield srv.start()
    finally:
        srv.stop_and_clean()


@pytest.fixture
def garden(server):
    """(GardenClient, handle of a container made through the Warden protocol)."""
    with Client(server.socket) as warden:
        handle = warden.create().handle.decode()
    return GardenClient(server.config["frontends"]["garden"]["listen_address"]), handle


def stdout_of(client, handle: str, spec: dict) -> tuple[bytes, int]:
    _, control, first = run(client, handle, spec)
    data = output(client, handle, first, "stdout").read_all()
    return data, exit_message(control)["exit_status"]


def test_a_process_runs_as_root_by_default_in_roots_home(garden):
    client, handle = garden
    assert stdout_of(client, handle, {"path": "sh", "args": ["-c", "id -u; echo $HOME; pwd"]}) \
        == (b"0\n/root\n/root\n", 0)


def test_a_process_runs_as_vcap_when_asked(garden):
    client, handle = garden
    data, status = stdout_of(client, handle, {"path": "sh", "args": ["-c", "id -u; id -g; echo $HOME"],
                                              "user": "vcap"})
    uid, gid, home = data.decode().split("\n")[:3]
    assert status == 0 and uid == gid and int(uid) > 0 and home == "/home/vcap"


def test_env_dir_and_exit_status_reach_the_process(garden):
    client, handle = garden
    spec = {"path": "/bin/sh", "args": ["-c", 'echo "$GREETING"; pwd; exit 42'],
            "env": ["GREETING=hello there"], "dir": "/tmp"}
    assert stdout_of(client, handle, spec) == (b"hello there\n/tmp\n", 42)


def test_an_rlimit_reaches_the_process(garden):
    client, handle = garden
    assert stdout_of(client, handle, {"path": "sh", "args": ["-c", "ulimit -n"],
                                      "rlimits": {"nofile": 123}}) == (b"123\n", 0)


def test_stdin_reaches_cat_and_eof_ends_it(garden):
    client, handle = garden
    _, control, first = run(client, handle, {"path": "cat", "user": "vcap"})
    stdout = output(client, handle, first, "stdout")
    control.send({"process_id": first["process_id"], "source": 0, "data": "to the container\n"})
    read_until(stdout, b"to the container\n")
    control.send({"process_id": first["process_id"], "source": 0})
    assert exit_message(control)["exit_status"] == 0


def test_terminate_ends_a_sleep_in_the_container(garden):
    client, handle = garden
    _, control, first = run(client, handle, {"path": "sleep", "args": ["600"]})
    control.send({"process_id": first["process_id"], "signal": 0})
    assert exit_message(control)["exit_status"] != 0


def test_a_tty_has_its_window_size_and_a_resize_changes_it(garden):
    client, handle = garden
    script = "tty; stty size; read line; stty size"
    _, control, first = run(client, handle, {"path": "sh", "args": ["-c", script],
                                             "tty": {"window_size": {"columns": 100, "rows": 30}}})
    stdout, stderr = output(client, handle, first, "stdout"), output(client, handle, first, "stderr")
    read_until(stdout, b"30 100")
    pid = first["process_id"]
    control.send({"process_id": pid, "tty": {"window_size": {"columns": 50, "rows": 20}}})
    control.send({"process_id": pid, "source": 0, "data": "go\n"})
    assert exit_message(control)["exit_status"] == 0
    text = stdout.read_all()
    assert b"/dev/pts/" in text and text.rstrip().endswith(b"20 50")
    assert stderr.read_all() == b""  # a TTY merges stderr into stdout


def test_a_tty_without_a_size_is_80_by_24(garden):
    client, handle = garden
    data, status = stdout_of(client, handle, {"path": "stty", "args": ["size"], "tty": {}})
    assert (data.strip(), status) == (b"24 80", 0)


def test_a_process_outlives_a_server_restart_and_is_reattached_by_id(tmp_path):
    srv = start_server(tmp_path)
    try:
        srv.start()
        with Client(srv.socket) as warden:
            handle = warden.create().handle.decode()
        client = GardenClient(srv.config["frontends"]["garden"]["listen_address"])
        script = "echo started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; exit 5"
        _, control, first = run(client, handle, {"id": "survivor", "path": "sh", "args": ["-c", script]})
        read_until(output(client, handle, first, "stdout"), b"started\n")
        srv.kill()
        control.close()
        srv.start()
        reply, attached = client.hijack("GET", client.path(ATTACH, handle=handle, pid="survivor"))
        assert reply.status == 200
        again = attached.message()
        stdout = output(client, handle, again, "stdout")
        assert stdout_of(client, handle, {"path": "touch", "args": ["/tmp/go"]}) == (b"", 0)
        assert exit_message(attached) == {"process_id": "survivor", "exit_status": 5}
        assert stdout.read_all() == b"after\n"
    finally:
        srv.stop_and_clean()


def test_a_tty_shell_outlives_its_client_and_takes_input_from_the_next(garden):
    client, handle = garden
    _, control, first = run(client, handle, {"id": "shell", "path": "sh", "tty": {}})
    control.send({"process_id": "shell", "source": 0, "data": "echo one-$((1+1))\n"})
    read_until(output(client, handle, first, "stdout"), b"one-2")
    control.close()
    reply, attached = client.hijack("GET", client.path(ATTACH, handle=handle, pid="shell"))
    assert reply.status == 200
    stdout = output(client, handle, attached.message(), "stdout")
    attached.send({"process_id": "shell", "source": 0, "data": "echo two-$((1+2)); exit 3\n"})
    assert exit_message(attached)["exit_status"] == 3
    assert b"two-3" in stdout.read_all()


def test_stdin_eof_on_a_tty_ends_cat(garden):
    client, handle = garden
    _, control, first = run(client, handle, {"path": "cat", "tty": {}})
    control.send({"process_id": first["process_id"], "source": 0, "data": "typed\n"})
    control.send({"process_id": first["process_id"], "source": 0})
    assert exit_message(control)["exit_status"] == 0
    assert b"typed" in output(client, handle, first, "stdout").read_all()
