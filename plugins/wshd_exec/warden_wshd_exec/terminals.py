"""The host end of a job's TTY: a thread per TTY job copies what the pseudo-terminal's master
yields into the job's stdout file (the file the server follows for output, as for any job),
sets its window size, and finishes the job once its output is in the file.

A pty hands a writer's bytes to its master through a kernel work item, so the job's exit can
be reported before everything it wrote is readable. The relay therefore finishes the job
itself: at end-of-file on the master (every holder of the slave closed it, and the kernel
flushes before saying so), or, when a process the job left behind keeps the terminal open, once
the master has stayed quiet for DRAIN_QUIET seconds after the exit (at most DRAIN_MAX). It
keeps copying what such a process writes until the terminal's last user leaves, then closes
its master.

The relay holds its own duplicate of the master (stdio.py says who closes what) and lives as
long as this server process: when the server exits, the master closes, the kernel hangs the
terminal up (SIGHUP to the job's foreground group), and whatever the job writes after that is
lost. A TTY job does not survive a restart with its terminal.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import kernel

log = logging.getLogger(__name__)

CHUNK = 1 << 16
DRAIN_QUIET = 0.05  # seconds without output after the exit: the job's last output is in
DRAIN_MAX = 1.0  # seconds after the exit a left-behind writer may delay the job's end


class TtyRelay:
    """Copies `master` (its own descriptor, taken over) into `out_path` on a thread of its
    own; calls `on_end` once the master is closed."""

    def __init__(self, master: int, out_path: Path | str, name: str,
                 on_end: Callable[[], None]) -> None:
        self._master = master
        self._out_path = out_path
        self._on_end = on_end
        self._lock = threading.Lock()
        self._ended = False
        self._finish: Callable[[], None] | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        try:
            self._thread.start()
        except BaseException:  # no thread: nothing else will close the descriptors
            self._close()
            raise

    def resize(self, rows: int, columns: int) -> None:
        """Set the window size (the job's foreground group gets SIGWINCH); nothing once the
        terminal's last user left."""
        with self._lock:
            if not self._ended:
                kernel.set_window_size(self._master, rows, columns)

    def finish_after_output(self, finish: Callable[[], None]) -> bool:
        """The job exited: have the relay call `finish` once what the job wrote is in the file.
        False if the relay has ended already: everything is there, the caller calls it."""
        with self._lock:
            if self._ended:
                return False
            self._finish = finish
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # a wake-up is pending already
        return True

    def _run(self) -> None:
        try:
            with open(self._out_path, "ab", buffering=0) as out:
                self._copy(out)
        except OSError as exc:
            log.warning("TTY relay %s stopped: %s", self._thread.name, exc)
        finally:
            finish = self._close()
            if finish is not None:
                finish()
            self._on_end()

    def _close(self) -> Callable[[], None] | None:
        """Mark the relay ended and close its descriptors; the finish still to call, if any."""
        with self._lock:
            self._ended = True
            finish, self._finish = self._finish, None
            for fd in (self._master, self._wake_r, self._wake_w):
                os.close(fd)
        return finish

    def _copy(self, out) -> None:
        """Until end-of-file (EIO) on the master; finishes the job on the way if it exited
        and the master stays quiet."""
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        exited_at: float | None = None
        while True:
            timeout = None
            if exited_at is None and self._finish is not None:
                exited_at = time.monotonic()
            if exited_at is not None and self._finish is not None:
                left = exited_at + DRAIN_MAX - time.monotonic()
                timeout = max(0, min(DRAIN_QUIET, left)) * 1000
            events = poller.poll(timeout)
            if not events or (exited_at is not None
                              and time.monotonic() >= exited_at + DRAIN_MAX):
                self._finish_now()
            for fd, _ in events:
                if fd == self._wake_r:
                    _drain(self._wake_r)
                elif not self._copy_some(out):
                    return

    def _copy_some(self, out) -> bool:
        """One read from the master into the file; False at its end."""
        try:
            data = os.read(self._master, CHUNK)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.EIO:  # the slave's last holder closed it
                return False
            raise
        view = memoryview(data)
        while view:
            view = view[out.write(view):]
        return bool(data)

    def _finish_now(self) -> None:
        with self._lock:
            finish, self._finish = self._finish, None
        if finish is not None:
            finish()


def _drain(fd: int) -> None:
    try:
        os.read(fd, 4096)
    except BlockingIOError:
        pass
