"""Integration tests of wshd on the real kernel (root): a busybox root, real namespaces, real
mounts. Each test starts its own wshd through the `containers` fixture, which SIGKILLs it
afterwards and checks that no wshd process and no mount of the test is left on the host."""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import time
from pathlib import Path

import pytest

from warden_wshd_exec.wshd_client import (
    ExitInfo,
    Kind,
    NoSuchJob,
    Tag,
    WshdError,
    decode,
    encode,
    is_alive,
    kill_wshd,
    parse_status_file,
    read_pid_file,
    start_wshd,
    u32_field,
)

HEADER = b"WSHD\x00\x01"
SPAWN_TRUE = [(Tag.ARG, b"/bin/true"), u32_field(Tag.GID, 0)]


def wait_exited(pid: int, timeout: float = 10.0) -> int:
    """Wait for our child pid to exit (no sleeping) and return its exit code."""
    pidfd = os.pidfd_open(pid)
    try:
        assert select.select([pidfd], [], [], timeout)[0], f"pid {pid} still running"
        result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    finally:
        os.close(pidfd)
    assert result is not None and result.si_code == os.CLD_EXITED
    return result.si_status


def wait_until(condition, what: str, timeout: float = 10.0) -> None:
    """Poll condition until it holds; fail naming what was awaited past the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


def sleeps_in(container) -> str:
    """How many `sleep 1000` run in the container (busybox re-execs applets: match args)."""
    return container.run(["/bin/sh", "-c", "ps -o args | grep -c '^sleep 1000' || true"]).stdout


def test_spawn_collects_output_exit_code_and_status_file(container) -> None:
    result = container.run(["/bin/sh", "-c", "echo hi; echo err >&2; exit 3"])
    assert (result.stdout, result.stderr) == ("hi\n", "err\n")
    assert (result.info.exit_code, result.info.signal) == (3, None)
    assert result.status == "exit 3\n"
    assert parse_status_file(result.status, result.info.pid) == result.info


def test_spawn_runs_as_the_requested_uid_and_gid_without_groups(container) -> None:
    result = container.run(["/bin/sh", "-c", "id -u; id -g; id -G"], uid=1234, gid=1235)
    assert result.stdout == "1234\n1235\n1235\n"


def test_spawn_gives_exactly_stdio_env_and_cwd(container) -> None:
    env = {"PATH": "/bin", "LANG": "C", "EMPTY": ""}
    script = "ls /proc/$$/fd; tr '\\0' '\\n' < /proc/$$/environ; pwd"
    result = container.run(["sh", "-c", script], env=env, cwd="/tmp")
    assert result.stdout.splitlines() == ["0", "1", "2", "PATH=/bin", "LANG=C", "EMPTY=", "/tmp"]


def test_hostname_is_the_given_name(containers) -> None:
    container = containers.start(hostname="wshd-test-host")
    assert container.run(["hostname"]).stdout == "wshd-test-host\n"


def test_jobs_see_their_own_pid_namespace_with_wshd_as_init(container) -> None:
    result = container.run(["/bin/sh", "-c", "echo $$; cat /proc/1/cmdline"])
    own_pid, cmdline = result.stdout.split("\n", 1)
    assert int(own_pid) == result.info.pid < 10
    argv = cmdline.split("\0")
    assert Path(argv[0]).name == "wshd" and argv[argv.index("--run") + 1] == str(container.run_dir)


def test_root_is_the_container_root_after_pivot(container) -> None:
    result = container.run(["ls", "-a", "/"])
    names = sorted(result.stdout.split())
    assert names == sorted([".", "..", *os.listdir(container.root_dir)])
    assert "usr" not in names and not any(n.startswith(".wshd-oldroot") for n in names)


def test_devices_and_mounts_inside_the_container(container) -> None:
    script = "ls /dev; cat /proc/mounts; echo x > /dev/null && head -c 4 /dev/zero | wc -c"
    result = container.run(["/bin/sh", "-c", script])
    lines = result.stdout.splitlines()
    for name in ("null", "zero", "full", "random", "urandom", "tty", "fd", "ptmx", "pts", "shm"):
        assert name in lines
    mounts = {(line.split()[1], line.split()[2]) for line in lines if line.count(" ") >= 3}
    expected = {("/proc", "proc"), ("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs")}
    assert expected <= mounts
    assert lines[-1] == "4"


def test_signal_kills_a_job_and_its_exit_reports_the_signal(container) -> None:
    with container.connect() as conn:
        pid, files = container.spawn(conn, ["sleep", "1000"])
        conn.signal(pid, signal.SIGKILL, group=False)
        info = conn.wait_exit(timeout=10)
    assert info == ExitInfo(pid, None, signal.SIGKILL)
    assert files.status.read_text() == "signal 9\n"


def test_group_signal_reaches_the_jobs_children(container) -> None:
    with container.connect() as conn:
        pid, files = container.spawn(conn, ["/bin/sh", "-c", "sleep 1000 & echo started; wait"])
        wait_until(lambda: files.out.read_text() == "started\n", "the job to start its child")
        conn.signal(pid, signal.SIGTERM, group=True)
        assert conn.wait_exit(timeout=10).signal == signal.SIGTERM
    # The child got the signal too; it may take a moment to exit and be reaped by wshd.
    wait_until(lambda: sleeps_in(container) == "0\n", "the job's child to die")


def test_rlimit_nofile_applies_to_the_job(container) -> None:
    rlimits = {resource.RLIMIT_NOFILE: (1234, 1234)}
    result = container.run(["/bin/sh", "-c", "ulimit -n"], rlimits=rlimits)
    assert result.stdout == "1234\n"


def test_bind_mounts_are_read_only_or_writable_and_unseen_by_the_host(containers) -> None:
    ro_src, rw_src = containers.work / "ro-src", containers.work / "rw-src"
    ro_src.mkdir()
    rw_src.mkdir()
    (ro_src / "file").write_text("from host\n")
    binds = [(str(ro_src), "/mnt/ro", True), (str(rw_src), "/mnt/rw", False)]
    container = containers.start(binds=binds)
    script = "cat /mnt/ro/file; echo x >/mnt/ro/new || echo refused; echo y >/mnt/rw/new && echo ok"
    result = container.run(["/bin/sh", "-c", script])
    assert result.stdout == "from host\nrefused\nok\n"
    assert "Read-only file system" in result.stderr
    assert not (ro_src / "new").exists() and (rw_src / "new").read_text() == "y\n"
    assert str(container.root_dir) not in Path("/proc/mounts").read_text()


MALFORMED = [
    pytest.param(b"garbage!", "bad magic", id="bad-magic"),
    pytest.param(b"WSHD\x00\x02\x00\x05", "unsupported version 2", id="version"),
    pytest.param(HEADER + b"\x00\x09", "unknown kind 9", id="unknown-kind"),
    pytest.param(HEADER + b"\x00\x03", "kind EXIT is not a request", id="reply-kind"),
    pytest.param(HEADER + b"\x00\x02\x00\x65\x00", "truncated field header", id="short-field"),
    pytest.param(HEADER + b"\x00\x02\x00\x65\x00\x00\x00\x04\x00", "runs past", id="short-value"),
    pytest.param(encode(Kind.PING, [(77, b"")]), "unknown field tag 77", id="unknown-tag"),
    pytest.param(encode(Kind.WAIT, []), "WAIT: missing field PID", id="missing-field"),
    pytest.param(
        encode(Kind.SPAWN, [*SPAWN_TRUE, u32_field(Tag.UID, 2**32 - 1)]),
        "field UID: 4294967295 is not a valid id",
        id="bad-uid",
    ),
    pytest.param(
        encode(Kind.SPAWN, [*SPAWN_TRUE, u32_field(Tag.UID, 0)]),
        "SPAWN takes 4 descriptors, got 0",
        id="no-fds",
    ),
    pytest.param(HEADER + b"\x00\x05" + bytes(70000), "message too long", id="oversize"),
]


def test_malformed_datagrams_get_an_error_reply_and_wshd_keeps_serving(container) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(10)
        sock.connect(str(container.run_dir / "wshd.sock"))
        for case in MALFORMED:
            datagram, expected = case.values
            sock.send(datagram)
            reply = decode(sock.recv(65536))
            assert (reply.kind, reply.failed()) == (Kind.ERROR, True), case.id
            assert expected in reply.message(), case.id
        with container.connect() as conn:
            assert conn.ping()
        sock.send(encode(Kind.PING, []))
        assert decode(sock.recv(65536)).get(Tag.STATUS) == b"\x00"


def test_descriptors_of_a_refused_request_are_closed(container) -> None:
    read_end, write_end = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(10)
            sock.connect(str(container.run_dir / "wshd.sock"))
            socket.send_fds(sock, [encode(Kind.PING, [])], [write_end])
            assert "PING takes 0 descriptors, got 1" in decode(sock.recv(65536)).message()
        os.close(write_end)
        write_end = -1
        # End-of-file proves wshd holds no copy of the write end any more.
        assert select.select([read_end], [], [], 10)[0] and os.read(read_end, 1) == b""
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_exec_failure_is_an_error_reply_and_not_a_job(container) -> None:
    with container.connect() as conn:
        with pytest.raises(WshdError, match="^exec /bin/nope: No such file or directory$"):
            container.spawn(conn, ["/bin/nope"])
        with pytest.raises(WshdError, match="^exec nope: No such file or directory$"):
            container.spawn(conn, ["nope"])
        with pytest.raises(WshdError, match="^chdir /nowhere: No such file or directory$"):
            container.spawn(conn, ["/bin/true"], cwd="/nowhere")
        assert conn.ping()
    assert all(p.read_text() == "" for p in container.work_dir.glob("*.st"))


def test_wait_on_a_new_connection_gets_the_exit_of_a_job_spawned_on_a_closed_one(container) -> None:
    stdin_read, stdin_write = os.pipe()
    try:
        with container.connect() as first:
            pid, files = container.spawn(first, ["cat"], stdin_fd=stdin_read)
        with container.connect() as second:
            second.request_wait(pid)
            assert second.ping()  # replies are in order: the WAIT is registered
            os.close(stdin_write)
            stdin_write = -1
            assert second.wait_exit(timeout=10) == ExitInfo(pid, 0, None)
            with pytest.raises(NoSuchJob):
                second.wait(pid, timeout=10)
            with pytest.raises(NoSuchJob):
                second.signal(pid, signal.SIGTERM)
    finally:
        os.close(stdin_read)
        if stdin_write >= 0:
            os.close(stdin_write)
    assert files.status.read_text() == "exit 0\n"


def test_pid_file_socket_mode_and_liveness(container) -> None:
    assert read_pid_file(container.run_dir) == container.pid
    assert (container.run_dir / "wshd.sock").stat().st_mode & 0o777 == 0o600
    assert is_alive(container.run_dir)
    kill_wshd(container.pid)
    assert not is_alive(container.run_dir)


def test_sigterm_ends_wshd_only_once_it_has_no_children(container) -> None:
    stdin_read, stdin_write = os.pipe()
    try:
        with container.connect() as conn:
            pid, _ = container.spawn(conn, ["cat"], stdin_fd=stdin_read)
            os.kill(container.pid, signal.SIGTERM)
            # The SIGTERM was pending before the first PING arrived, so by the second
            # reply wshd has handled it, and kept serving because cat is its child.
            assert conn.ping() and conn.ping()
            os.close(stdin_write)
            stdin_write = -1
            assert conn.wait_exit(timeout=10) == ExitInfo(pid, 0, None)
        os.kill(container.pid, signal.SIGTERM)
        assert wait_exited(container.pid) == 0  # our child: the fixture is its subreaper
    finally:
        os.close(stdin_read)
        if stdin_write >= 0:
            os.close(stdin_write)


def test_abort_before_release_kills_the_init_and_removes_the_socket(containers) -> None:
    launch, run_dir, _, _ = containers.launch()
    pidfd = os.pidfd_open(launch.pid)
    try:
        launch.abort()
        assert select.select([pidfd], [], [], 10)[0]
    finally:
        os.close(pidfd)
    assert not (run_dir / "wshd.sock").exists() and not (run_dir / "wshd.pid").exists()


def test_a_setup_failure_in_the_container_is_raised_by_release(containers) -> None:
    # An empty read-only directory over /dev: the init finds no /dev/null to put its stdio on.
    empty = containers.work / "empty"
    empty.mkdir()
    launch, run_dir, _, _ = containers.launch(binds=[(str(empty), "/dev", True)])
    with pytest.raises(WshdError, match=r"^wshd: open /dev/null: No such file or directory$"):
        launch.release()
    assert not (run_dir / "wshd.sock").exists() and not (run_dir / "wshd.pid").exists()


def test_a_bind_target_that_cannot_be_made_ends_start_up_before_the_clone(containers) -> None:
    # /bin/busybox is a file, so the bind's mount point cannot be made below it.
    binds = [(str(containers.work), "/bin/busybox/x", False)]
    with pytest.raises(WshdError, match=(r"^wshd: bind onto /bin/busybox/x: "
                                         r"open /bin/busybox in the root: Not a directory$")):
        containers.launch(binds=binds)
    # The fixture's teardown checks that no wshd process and no mount is left.
    assert not list(containers.work.glob("c*/run/wshd.*"))


def test_a_bad_command_line_is_raised_with_wshd_message(wshd_binary, tmp_path) -> None:
    with pytest.raises(WshdError, match=r"^wshd: --root \S+: No such file or directory"):
        start_wshd(wshd_binary, tmp_path, tmp_path / "missing", "box", [])
    with pytest.raises(WshdError, match=r"contains \.\."):
        start_wshd(wshd_binary, tmp_path, tmp_path, "box", [(str(tmp_path), "/a/../b", True)])
    assert list(tmp_path.iterdir()) == []


def test_a_cgroup_it_cannot_join_ends_start_up_before_anything_is_made(wshd_binary, tmp_path) -> None:
    run_dir, root = tmp_path / "run", tmp_path / "root"
    run_dir.mkdir()
    root.mkdir()
    missing = str(tmp_path / "no-such-group" / "tasks")
    with pytest.raises(WshdError, match=r"^wshd: open \S+/no-such-group/tasks: No such file"):
        start_wshd(wshd_binary, run_dir, root, "box", [], cgroup_tasks=[missing])
    with pytest.raises(WshdError, match=r"--cgroup-tasks tasks: not an absolute path"):
        start_wshd(wshd_binary, run_dir, root, "box", [], cgroup_tasks=["tasks"])
    assert list(run_dir.iterdir()) == []
