"""The descriptors a job starts with, sent to wshd with its SPAWN.

stdin is Warden's script (a memfd bash reads), nothing (/dev/null) for a Garden process, a
pipe whose write end the front end keeps (job.stdin), or a TTY: one pseudo-terminal's slave
as stdin, stdout and stderr, whose master the front end keeps. stdout, stderr and the status
are files in the job's directory, opened here so that they outlive the server; a TTY job's
output reaches its stdout file through the driver's relay (terminals.py) instead.

Who closes what: the driver closes every descriptor it sent once the SPAWN was answered (wshd
and the job hold their own copies by then), and on failure also the input end. The input end
(job.stdin_fd: the pipe's write end, or the master) belongs to the front end once spawn
returned: it writes the job's input there and closes it for end-of-file, or when the job is
gone. The TTY relay holds a duplicate of the master of its own, closed when the terminal's
last user left; the front end's close therefore never hangs the terminal up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from . import kernel

FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


@dataclass
class JobStdio:
    stdin: int
    stdout: int
    stderr: int
    status: int
    input_fd: int | None = None  # becomes job.stdin_fd: a pipe's write end or a TTY's master

    @property
    def sent(self) -> list[int]:
        """What the SPAWN carries, in wshd's order."""
        return [self.stdin, self.stdout, self.stderr, self.status]

    def close_sent(self) -> None:
        for fd in set(self.sent):  # a TTY's slave is sent three times but opened once
            os.close(fd)

    def close_input(self) -> None:
        if self.input_fd is not None:
            os.close(self.input_fd)
            self.input_fd = None


def open_stdio(job, open_tty: Callable[[], tuple[int, int]] | None = None) -> JobStdio:
    """The descriptors of `job` (jobs.Job). `open_tty` returns a (master, slave) pair; it is
    called only for a TTY job. On failure nothing opened here stays open."""
    opened: list[int] = []

    def keep(fd: int) -> int:
        opened.append(fd)
        return fd

    try:
        status = keep(os.open(job.status_path, FILE_FLAGS, 0o600))
        if job.tty is not None:
            if open_tty is None:
                raise ValueError(f"job {job.id} has a TTY: open_stdio needs open_tty")
            for path in (job.stdout_path, job.stderr_path):  # the relay appends to stdout
                os.close(os.open(path, FILE_FLAGS, 0o600))
            master, slave = map(keep, open_tty())
            return JobStdio(slave, slave, slave, status, input_fd=master)
        if job.argv is None:  # Warden: bash alone reads the script, so it need not be a file
            stdin, input_fd = keep(kernel.memfd_holding("warden-job-script", job.script)), None
        elif job.stdin:
            stdin, input_fd = map(keep, kernel.stdin_pipe())
        else:
            stdin, input_fd = keep(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)), None
        if job.discard_output:
            out = keep(os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
            err = keep(os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
        else:
            out = keep(os.open(job.stdout_path, FILE_FLAGS, 0o600))
            err = keep(os.open(job.stderr_path, FILE_FLAGS, 0o600))
        return JobStdio(stdin, out, err, status, input_fd=input_fd)
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
