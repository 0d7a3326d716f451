"""TtyRelay (terminals.py) on real pseudo-terminals of the host: the output it copies, when it
finishes a job, its end when the terminal's last user leaves, and the window size. Needs no
root and no container: the test holds the slave, as a job would."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from warden_wshd_exec.terminals import DRAIN_MAX, TtyRelay

TIMEOUT = 10.0


class Pty:
    """A pty pair, a relay copying its master into `out`, and what the relay reported."""

    def __init__(self, out: Path) -> None:
        self.master, self.slave = os.openpty()
        self.out = out
        self.ended = threading.Event()
        self.finished: list[int] = []  # the file's size when the relay called finish
        self.relay = TtyRelay(os.dup(self.master), out, "test-relay", on_end=self.ended.set)
        self.relay.start()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.slave, view):]

    def finish_later(self) -> bool:
        return self.relay.finish_after_output(lambda: self.finished.append(self.size()))

    def size(self) -> int:
        return len(self.content())

    def content(self) -> bytes:
        """The file so far (the relay makes it when its thread starts)."""
        return self.out.read_bytes() if self.out.exists() else b""

    def close_slave(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1


def wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    made = Pty(tmp_path / "stdout")
    try:
        yield made
    finally:
        made.close_slave()
        assert made.ended.wait(TIMEOUT), "the relay did not end at the slave's close"
        os.close(made.master)


def test_the_relay_copies_the_terminals_output_into_the_file(pty) -> None:
    pty.write(b"hello\n")
    wait_for(lambda: pty.content() == b"hello\r\n", "the output")  # ONLCR


def test_finish_waits_for_the_output_written_before_the_exit(pty) -> None:
    """The last of what a job writes is still in the kernel's buffers when its exit is known:
    finish comes only once all of it is in the file."""
    data = b"x" * (1 << 18)
    pty.write(data)  # returns with up to a buffer's worth not yet readable on the master
    assert pty.finish_later()
    wait_for(lambda: pty.finished, "finish")
    assert pty.finished == [len(data)]


def test_finish_comes_within_drain_max_while_a_left_behind_writer_writes_on(pty) -> None:
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            pty.write(b"y" * 512)
            time.sleep(0.001)

    writer = threading.Thread(target=chatter)
    writer.start()
    try:
        assert pty.finish_later()
        wait_for(lambda: pty.finished, "finish", timeout=DRAIN_MAX + 2)
        grown = pty.size()
        wait_for(lambda: pty.size() > grown, "the relay to copy on after finish")
    finally:
        stop.set()
        writer.join()


def test_the_relay_ends_when_the_slaves_last_holder_closes_it(pty) -> None:
    pty.write(b"last words\n")
    pty.close_slave()
    assert pty.ended.wait(TIMEOUT)
    assert pty.content() == b"last words\r\n"
    assert not pty.finish_later()  # ended: the caller finishes the job itself
    pty.relay.resize(10, 10)  # nothing to resize any more: no error


def test_finish_before_the_end_is_called_at_the_end(pty) -> None:
    pty.write(b"bye\n")
    assert pty.finish_later()
    pty.close_slave()
    assert pty.ended.wait(TIMEOUT)
    assert pty.finished == [len(b"bye\r\n")]


def test_resize_sets_the_window_size_the_slave_reports(pty) -> None:
    pty.relay.resize(33, 144)
    rows, columns, _, _ = struct.unpack(
        "HHHH", fcntl.ioctl(pty.slave, termios.TIOCGWINSZ, b"\0" * 8))
    assert (rows, columns) == (33, 144)
