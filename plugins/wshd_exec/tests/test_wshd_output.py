"""wshd's copy of job output under OUTPUT_LIMIT (native/wshd/output.c), on the real kernel: the
limit holds for every process of the job, also after the job's main process exited, and EXIT
comes only once what the job wrote before exiting is in its files."""

from __future__ import annotations

import time

import pytest

from warden_wshd_exec.wshd_client import ExitInfo, NoSuchJob, WshdError

LIMIT = 100 * 1024
CHUNK = 64 * 1024  # OUTPUT_CHUNK: the most wshd copies past the limit


def size(path) -> int:
    return path.stat().st_size


def count_in(container, pattern: str) -> int:
    """How many processes of the container run a command line starting with pattern."""
    result = container.run(["/bin/sh", "-c", f"ps -o args | grep -c '^{pattern}' || true"])
    return int(result.stdout)


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_background_writer_after_the_exit_is_stopped_at_the_limit(container) -> None:
    with container.connect() as conn:
        pid, files = container.spawn(conn, ["/bin/sh", "-c", "( sleep 0.5; cat /dev/zero ) & exit 0"],
                                     output_limit=LIMIT)
        assert conn.wait_exit(timeout=10) == ExitInfo(pid, 0, None)
    time.sleep(3)
    written = size(files.out)
    assert LIMIT < written <= LIMIT + CHUNK
    assert count_in(container, "cat") == 0  # the job's group was killed
    time.sleep(0.5)
    assert size(files.out) == written


def test_a_writer_that_left_the_group_gets_epipe_and_adds_nothing(container) -> None:
    script = "setsid sh -c 'sleep 0.5; cat /dev/zero' & exit 0"
    with container.connect() as conn:
        pid, files = container.spawn(conn, ["/bin/sh", "-c", script], output_limit=LIMIT)
        assert conn.wait_exit(timeout=10).exit_code == 0
    wait_for(lambda: size(files.out) > LIMIT, "the escaped writer to pass the limit")
    wait_for(lambda: count_in(container, "cat") == 0, "SIGPIPE to end the escaped writer")
    assert LIMIT < size(files.out) <= LIMIT + CHUNK


def test_a_running_job_past_the_limit_is_killed_with_its_group(container) -> None:
    with container.connect() as conn:
        pid, files = container.spawn(conn, ["/bin/sh", "-c", "cat /dev/zero & cat /dev/zero; wait"],
                                     output_limit=LIMIT)
        info = conn.wait_exit(timeout=10)
    assert info == ExitInfo(pid, None, 9)
    assert LIMIT < size(files.out) <= LIMIT + CHUNK
    wait_for(lambda: count_in(container, "cat") == 0, "the job's other writer to die")


@pytest.mark.parametrize("written", [LIMIT - 1, LIMIT])
def test_output_up_to_the_limit_is_kept_whole_and_the_job_exits_normally(container, written) -> None:
    result = container.run(["/bin/sh", "-c", f"head -c {written} /dev/zero; echo -n x >&2"],
                           output_limit=LIMIT + 1)
    assert result.info.exit_code == 0
    assert (len(result.stdout), result.stderr) == (written, "x")


def test_stdout_and_stderr_count_together(container) -> None:
    script = "head -c 60000 /dev/zero; head -c 60000 /dev/zero >&2; sleep 100"
    with container.connect() as conn:
        pid, files = container.spawn(conn, ["/bin/sh", "-c", script], output_limit=LIMIT)
        info = conn.wait_exit(timeout=10)
    assert info.signal == 9
    assert size(files.out) == 60000
    assert LIMIT < size(files.out) + size(files.err) <= LIMIT + CHUNK


def test_output_written_after_the_exit_within_the_limit_lands_in_the_file(container) -> None:
    with container.connect() as conn:
        pid, files = container.spawn(
            conn, ["/bin/sh", "-c", "( sleep 0.3; echo late; echo late-err >&2 ) & echo early"],
            output_limit=LIMIT)
        assert conn.wait_exit(timeout=10).exit_code == 0
        # The main process is gone though its output is still watched: not a job any more.
        with pytest.raises(NoSuchJob):
            conn.wait(pid, timeout=10)
    wait_for(lambda: files.out.read_text() == "early\nlate\n", "the late line")
    wait_for(lambda: files.err.read_text() == "late-err\n", "the late stderr line")


def test_exit_comes_after_the_output_written_before_it(container) -> None:
    # More than a pipe holds (64 KiB), then an exit at once: all of it is in the file at EXIT.
    for n in (1, 5000, 65536, 300000):
        result = container.run(["/bin/sh", "-c", f"head -c {n} /dev/zero; echo -n e >&2"],
                               output_limit=1 << 20)
        assert (len(result.stdout), result.stderr, result.info.exit_code) == (n, "e", 0)
    for _ in range(50):
        result = container.run(["/bin/echo", "hi"], output_limit=LIMIT)
        assert result.stdout == "hi\n"


def test_with_a_limit_the_job_writes_pipes_and_without_it_the_files(container) -> None:
    argv = ["/bin/sh", "-c", "readlink /proc/self/fd/1; readlink /proc/self/fd/2"]
    piped = container.run(argv, output_limit=LIMIT).stdout.split()
    direct = container.run(argv).stdout.split()
    assert [name.startswith("pipe:") for name in piped] == [True, True]
    assert not any(name.startswith("pipe:") for name in direct)


def test_a_limit_out_of_range_is_refused(container) -> None:
    with container.connect() as conn, pytest.raises(WshdError, match="output limit"):
        container.spawn(conn, ["/bin/true"], output_limit=2**63)


def test_many_jobs_with_pipes_leave_no_descriptor_behind(container) -> None:
    def wshd_fds() -> int:
        return len(list((__import__("pathlib").Path(f"/proc/{container.pid}/fd")).iterdir()))

    before = wshd_fds()
    for _ in range(20):
        container.run(["/bin/sh", "-c", "echo x; echo y >&2"], output_limit=LIMIT)
    with container.connect() as conn:
        pid, files = container.spawn(conn, ["/bin/sh", "-c", "( sleep 0.2; echo z ) & exit 0"],
                                     output_limit=LIMIT)
        conn.wait_exit(timeout=10)
    wait_for(lambda: files.out.read_text() == "z\n", "the late line")
    wait_for(lambda: wshd_fds() == before, "wshd to close every pipe and file")
