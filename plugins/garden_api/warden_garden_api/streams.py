"""The stdout and stderr of each Run or Attach (garden-api.md §5.6): a stream id, the job's two
output files opened when the stream is made, and the reading of one file to its end.

The files are opened at once, not when the client connects: the client connects after the
first control message, possibly after the process ended and its record and directory were
forgotten (the exit status was delivered), and an open file outlives its removal. A Run's
stream starts at the beginning of each file; an Attach's at the current end, as Garden
promises no replay and a client that re-attaches after a restart (Concourse, Diego) already
has the earlier output. A stream not connected within LINGER of the process's end is closed
(the Go server keeps its buffers a minute too).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import BinaryIO

from warden_framework.jobs import CHUNK, FOLLOW_INTERVAL, SMALL_READ, Job

LINGER = 60.0
OUTPUTS = ("stdout", "stderr")


class OutputStream:
    def __init__(self, job: Job, at_end: bool) -> None:
        self.job = job
        self.files: dict[str, BinaryIO | None] = {}
        for name, path in zip(OUTPUTS, (job.stdout_path, job.stderr_path)):
            self.files[name] = _open(path, at_end)

    def take(self, name: str) -> BinaryIO | None:
        """The file of output `name`, once (a second connection for it gets nothing)."""
        return self.files.pop(name, None)

    def close(self) -> None:
        for f in self.files.values():
            if f is not None:
                f.close()
        self.files.clear()


class Streams:
    """Stream ids are decimal strings from 1, as the Go server's (a client only echoes them)."""

    def __init__(self, background: Callable[[Coroutine], None]) -> None:
        self._background = background
        self._ids = itertools.count(1)
        self._streams: dict[str, OutputStream] = {}

    def open(self, job: Job, at_end: bool) -> str:
        stream_id = str(next(self._ids))
        self._streams[stream_id] = OutputStream(job, at_end)
        self._background(self._expire(stream_id, job))
        return stream_id

    def take(self, stream_id: str, name: str) -> tuple[Job, BinaryIO] | None:
        """The job and output `name` of a stream, or None (unknown stream, output taken)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        f = stream.take(name)
        if not stream.files:
            del self._streams[stream_id]
        return None if f is None else (stream.job, f)

    async def _expire(self, stream_id: str, job: Job) -> None:
        try:
            await job.wait()
            await asyncio.sleep(LINGER)
        finally:  # also when the server stops
            stream = self._streams.pop(stream_id, None)
            if stream is not None:
                stream.close()


async def follow(job: Job, f: BinaryIO) -> AsyncIterator[bytes]:
    """Chunks of `f` as the job writes them, until it ended and all is read; closes `f`.
    (Job.follow reads both outputs together; a Garden stream carries one.) Large reads run
    in the default executor, so a big output never stalls the loop."""
    loop = asyncio.get_running_loop()
    reading: asyncio.Future | None = None
    try:
        while True:
            finished = job.done  # read before the file, so nothing written before the end is lost
            if os.fstat(f.fileno()).st_size - f.tell() > SMALL_READ:
                reading = loop.run_in_executor(None, f.read, CHUNK)
                data = await reading
            else:
                data = f.read(CHUNK)
            if data:
                yield data
            elif finished:
                return
            else:
                await asyncio.sleep(FOLLOW_INTERVAL)
    finally:
        if reading is not None and not reading.done():  # cancelled mid-read: close after it
            reading.add_done_callback(lambda _: f.close())
        else:
            f.close()


def _open(path, at_end: bool) -> BinaryIO | None:
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 (the stream's until taken)
    except FileNotFoundError:  # a driver that writes no such file: an empty output
        return None
    if at_end:
        f.seek(0, os.SEEK_END)
    return f
