"""Run, Attach, stdout/stderr and the control messages, as Garden's Go client speaks them
(garden-api.md §5), on fake drivers: the processes are real host processes (FakeExec), the
containers are made through the Warden front end of the same server."""

from __future__ import annotations

import json
import secrets
import socket
import time

import pytest
from garden_client import Hijacked, _read_head

from warden_framework.client import Client

RUN = "/containers/:handle/processes"
ATTACH = "/containers/:handle/processes/:pid"
OUTPUT = "/containers/:handle/processes/:pid/attaches/:sid/:name"


def run(client, handle: str, spec: dict):
    """Run as the Go client does: the spec (with the structs it always sends), the header,
    the first message; returns (reply, control socket, first message)."""
    reply, control = client.hijack("POST", client.path(RUN, handle=handle),
                                   {"rlimits": {}, "image": {}, **spec})
    assert reply.status == 201, reply
    return reply, control, control.message()


def output(client, handle: str, first: dict, name: str):
    reply, sock = client.hijack("GET", client.path(OUTPUT, handle=handle, pid=first["process_id"],
                                                   sid=first["stream_id"], name=name))
    assert reply.status == 200, reply
    return sock


def read_until(sock, wanted: bytes, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while wanted not in sock.buffer:
        assert time.monotonic() < deadline, f"no {wanted!r} in {sock.buffer!r}"
        sock.sock.settimeout(deadline - time.monotonic())
        chunk = sock.sock.recv(65536)
        assert chunk, f"stream ended before {wanted!r}: {sock.buffer!r}"
        sock.buffer += chunk
    return sock.buffer


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def exit_message(control) -> dict:
    """The exit message, then the end of the control stream."""
    message = control.message()
    assert control.message() is None, "the control stream goes on after the exit status"
    return message


def test_run_echo_streams_its_stdout_and_exits_zero(garden):
    _, client, handle = garden
    reply, control, first = run(client, handle, {"path": "echo", "args": ["hi"]})
    assert reply.headers == {"content-type": "application/json", "transfer-encoding": "chunked"}
    assert isinstance(first["process_id"], str) and isinstance(first["stream_id"], str)
    stdout, stderr = output(client, handle, first, "stdout"), output(client, handle, first, "stderr")
    assert stdout.read_all() == b"hi\n"
    assert stderr.read_all() == b""
    assert exit_message(control) == {"process_id": first["process_id"], "exit_status": 0}


def test_a_generated_process_id_is_path_safe_and_unique(garden):
    _, client, handle = garden
    ids = set()
    for _ in range(2):
        _, control, first = run(client, handle, {"path": "true"})
        assert exit_message(control)["exit_status"] == 0
        ids.add(first["process_id"])
    assert len(ids) == 2
    assert all(pid and all(c.isalnum() or c == "-" for c in pid) for pid in ids)


def test_exit_status_and_stderr_of_a_failing_process(garden):
    _, client, handle = garden
    _, control, first = run(client, handle, {"path": "sh", "args": ["-c", "echo oops >&2; exit 3"]})
    stdout, stderr = output(client, handle, first, "stdout"), output(client, handle, first, "stderr")
    assert exit_message(control)["exit_status"] == 3
    assert (stdout.read_all(), stderr.read_all()) == (b"", b"oops\n")


def test_env_and_dir_reach_the_process(garden, tmp_path):
    _, client, handle = garden
    _, control, first = run(client, handle, {"path": "sh", "args": ["-c", 'echo "$GREETING"; pwd'],
                                             "env": ["GREETING=hello there"], "dir": str(tmp_path)})
    stdout = output(client, handle, first, "stdout")
    assert stdout.read_all() == f"hello there\n{tmp_path}\n".encode()
    assert exit_message(control)["exit_status"] == 0


def test_stdin_reaches_cat_and_eof_ends_it(garden):
    _, client, handle = garden
    _, control, first = run(client, handle, {"path": "cat"})
    stdout = output(client, handle, first, "stdout")
    pid = first["process_id"]
    control.send({"process_id": pid, "source": 0, "data": "line one\n"})
    assert read_until(stdout, b"line one\n") == b"line one\n"  # echoed while cat still runs
    control.send({"process_id": pid, "source": 0, "data": ""})  # empty data is data, not EOF
    control.send({"process_id": pid, "source": 0, "data": "two"})
    control.send({"process_id": pid, "source": 0})
    assert exit_message(control) == {"process_id": pid, "exit_status": 0}
    assert stdout.read_all() == b"line one\ntwo"


def test_megabytes_of_stdin_in_large_messages_arrive_whole(garden):
    """Messages larger than the server's line buffer, and more than the pipe holds at once."""
    _, client, handle = garden
    _, control, first = run(client, handle, {"path": "sh", "args": ["-c", "sleep 0.2; wc -c"]})
    stdout = output(client, handle, first, "stdout")
    chunk = "\\x" * 150_000  # 300 kB of data, one JSON line each
    for _ in range(10):
        control.send({"process_id": first["process_id"], "source": 0, "data": chunk})
    control.send({"process_id": first["process_id"], "source": 0})
    assert exit_message(control)["exit_status"] == 0
    assert stdout.read_all().strip() == b"3000000"


def test_signal_terminate_ends_a_sleep(garden):
    _, client, handle = garden
    _, control, first = run(client, handle, {"path": "sleep", "args": ["60"]})
    started = time.monotonic()
    control.send({"process_id": first["process_id"], "signal": 0})  # 0 is terminate: present, not true
    status = exit_message(control)["exit_status"]
    assert status != 0 and time.monotonic() - started < 30


def test_signal_kill_ends_a_process_that_ignores_terminate(garden):
    _, client, handle = garden
    _, control, first = run(client, handle, {"path": "sh", "args": ["-c", "trap '' TERM; echo ready; sleep 60"]})
    stdout = output(client, handle, first, "stdout")
    read_until(stdout, b"ready\n")
    control.send({"process_id": first["process_id"], "signal": 0})
    time.sleep(0.2)
    control.sock.settimeout(0)
    with pytest.raises(BlockingIOError):  # no exit status: the process ignored terminate
        control.sock.recv(1, socket.MSG_PEEK)
    control.send({"process_id": first["process_id"], "signal": 1})
    assert exit_message(control)["exit_status"] != 0


def test_a_client_chosen_id_is_refused_while_live_and_free_after_its_exit_was_delivered(garden):
    _, client, handle = garden
    pid = "task-" + secrets.token_hex(4)
    _, control, first = run(client, handle, {"id": pid, "path": "sleep", "args": ["60"]})
    assert first["process_id"] == pid
    reply, sock = client.hijack("POST", client.path(RUN, handle=handle), {"id": pid, "path": "true"})
    assert sock is None and reply.status == 500
    assert reply.json() == {"Type": "", "Message": f"process ID '{pid}' already in use",
                            "Handle": "", "ProcessID": ""}
    assert "connection" not in reply.headers and "content-length" in reply.headers
    control.send({"process_id": pid, "signal": 1})
    exit_message(control)
    _, control, first = run(client, handle, {"id": pid, "path": "true"})
    assert first["process_id"] == pid and exit_message(control)["exit_status"] == 0


def test_attach_after_the_control_socket_closed_streams_new_output_and_the_exit(garden, tmp_path):
    _, client, handle = garden
    go = tmp_path / "go"
    script = f"echo before; while [ ! -e {go} ]; do sleep 0.01; done; echo after"
    _, control, first = run(client, handle, {"id": "waiter", "path": "sh", "args": ["-c", script]})
    read_until(output(client, handle, first, "stdout"), b"before\n")
    control.close()  # the client goes away: the process runs on
    reply, attached = client.hijack("GET", client.path(ATTACH, handle=handle, pid="waiter"))
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    again = attached.message()
    assert again["process_id"] == "waiter" and again["stream_id"] != first["stream_id"]
    stdout = output(client, handle, again, "stdout")
    go.touch()
    assert exit_message(attached) == {"process_id": "waiter", "exit_status": 0}
    assert stdout.read_all() == b"after\n"  # an Attach streams from the current end
    reply, _ = client.hijack("GET", client.path(ATTACH, handle=handle, pid="waiter"))
    assert reply.status == 404  # forgotten once its exit status was delivered


def test_a_process_that_ended_unattended_keeps_its_exit_for_the_next_attach(garden):
    """The last client leaving ends a pipe's input (cat exits 0); the exit waits for an Attach."""
    srv, client, handle = garden
    _, control, _ = run(client, handle, {"id": "lonely", "path": "cat"})
    control.close()
    container = srv.orchestrator.containers[handle]
    wait_for(lambda: srv.orchestrator.find_process(container, "lonely").done)
    reply, attached = client.hijack("GET", client.path(ATTACH, handle=handle, pid="lonely"))
    assert reply.status == 200
    assert attached.message()["process_id"] == "lonely"
    assert exit_message(attached) == {"process_id": "lonely", "exit_status": 0}


def test_two_clients_attached_both_get_the_exit_status(garden, tmp_path):
    _, client, handle = garden
    go = tmp_path / "go"
    script = f"while [ ! -e {go} ]; do sleep 0.01; done; exit 7"
    _, control, _ = run(client, handle, {"id": "shared", "path": "sh", "args": ["-c", script]})
    _, attached = client.hijack("GET", client.path(ATTACH, handle=handle, pid="shared"))
    attached.message()
    go.touch()
    assert exit_message(control)["exit_status"] == 7
    assert exit_message(attached)["exit_status"] == 7


def test_attach_to_an_unknown_process_is_a_404_process_not_found_error(garden):
    _, client, handle = garden
    reply, sock = client.hijack("GET", client.path(ATTACH, handle=handle, pid="nope"))
    assert sock is None and reply.status == 404
    assert reply.json() == {"Type": "ProcessNotFoundError", "Message": "unknown process: nope",
                            "Handle": "", "ProcessID": "nope"}
    assert "connection" not in reply.headers  # else the Go client sees "persistent connection closed"


def test_run_in_an_unknown_container_is_a_404_container_not_found_error(garden):
    _, client, _ = garden
    reply, sock = client.hijack("POST", client.path(RUN, handle="no-such"), {"path": "true"})
    assert sock is None and reply.status == 404
    assert reply.json()["Type"] == "ContainerNotFoundError" and reply.json()["Handle"] == "no-such"


def test_an_unknown_stream_id_answers_200_and_closes(garden):
    _, client, handle = garden
    reply, sock = client.hijack("GET", client.path(OUTPUT, handle=handle, pid="x", sid="999999",
                                                   name="stdout"))
    assert reply.status == 200 and sock.read_all() == b""


def test_a_late_stdout_connection_gets_all_of_a_finished_process_output(garden):
    """The Go client may open stdout after the exit message: the output waits for it."""
    _, client, handle = garden
    _, control, first = run(client, handle, {"path": "seq", "args": ["1", "20000"]})
    assert exit_message(control)["exit_status"] == 0
    time.sleep(0.2)  # the forgotten process's directory is gone by now
    expected = "".join(f"{n}\n" for n in range(1, 20001)).encode()
    assert output(client, handle, first, "stdout").read_all() == expected


@pytest.mark.parametrize("spec, text", [
    ({"limits": {"memory_limits": {"limit_in_bytes": 1 << 20}}}, "per-process limits are not supported"),
    ({"image": {"uri": "docker:///busybox"}}, "per-process images are not supported"),
    ({"bind_mounts": [{"src_path": "/a", "dst_path": "/b"}]}, "per-process bind mounts"),
    ({"rlimits": {"bogus": 1}}, "unknown rlimit 'bogus'"),
    ({"path": ""}, "path is required"),
    ({"id": "garden-files-x"}, "is reserved"),
])
def test_what_the_server_does_not_do_is_refused_by_name(garden, spec, text):
    _, client, handle = garden
    reply, sock = client.hijack("POST", client.path(RUN, handle=handle),
                                {"path": "true", "rlimits": {}, **spec})
    assert sock is None and reply.status == 500 and text in reply.json()["Message"]


def test_empty_limits_and_an_empty_image_are_accepted(garden):
    _, client, handle = garden
    _, control, _ = run(client, handle, {"path": "true", "image": {},
                                         "limits": {"cpu_limits": {}, "memory_limits": {}}})
    assert exit_message(control)["exit_status"] == 0


def test_a_process_id_shows_in_info_while_it_runs(garden):
    _, client, handle = garden
    _, control, _ = run(client, handle, {"id": "listed", "path": "sleep", "args": ["60"]})
    info = client.call("GET", client.path("/containers/:handle/info", handle=handle)).json()
    assert info["ProcessIDs"] == ["listed"]
    control.send({"process_id": "listed", "signal": 1})
    exit_message(control)
    info = client.call("GET", client.path("/containers/:handle/info", handle=handle)).json()
    assert not info["ProcessIDs"]


def test_a_malformed_control_message_does_not_stop_the_exit_status(garden):
    _, client, handle = garden
    _, control, first = run(client, handle, {"path": "cat"})
    control.sock.sendall(b"{not json\n")  # stdin ends, as Garden's server stops reading there
    assert exit_message(control) == {"process_id": first["process_id"], "exit_status": 0}


def test_the_control_stream_reads_messages_sent_with_the_request(garden):
    """Bytes after the Run's body, sent before the header came back, are the client's first
    messages (garden-api.md §8.3)."""
    _, client, handle = garden
    body = json.dumps({"id": "eager", "path": "cat", "rlimits": {}, "image": {}}).encode() + b"\n"
    messages = (json.dumps({"process_id": "eager", "source": 0, "data": "early"}) + "\n"
                + json.dumps({"process_id": "eager", "source": 0}) + "\n").encode()
    sock = client._connect()
    sock.sendall(f"POST {client.path(RUN, handle=handle)} HTTP/1.1\r\nHost: api\r\n"
                 f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n".encode()
                 + body + messages)
    status, _, rest = _read_head(sock)
    control = Hijacked(sock, rest)
    first = control.message()
    assert status == 201
    stdout = output(client, handle, first, "stdout")
    assert exit_message(control)["exit_status"] == 0
    assert stdout.read_all() == b"early"


def test_an_open_control_stream_holds_the_container_past_its_grace_time(fake_garden):
    """Garden pauses a container's grace timer while a Run's stream is open, and the process
    keeps running; once the stream closes, the timer runs again."""
    srv, client, warden_socket = fake_garden
    with Client(warden_socket) as warden:
        handle = warden.create(grace_time=1).handle.decode()
    _, control, _ = run(client, handle, {"path": "sleep", "args": ["60"]})
    time.sleep(1.5)  # past the grace time
    with Client(warden_socket) as warden:
        assert handle in [h.decode() for h in warden.list().handles]
    control.close()
    wait_for(lambda: handle not in srv.orchestrator.containers, timeout=10)
