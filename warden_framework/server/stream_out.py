"""A Stream answer's output chunks, sent from the job's files by sendfile(2) (issue 14).

Job.follow hands each chunk to Python: a read into a new bytes object, a join into a frame
and a socket write, three copies of the data that cost the server about 2 s of CPU per GiB
streamed (bench/profile.py --workload stream). Here a chunk is its hand-built head
(protocol/output_chunk.py), the bytes themselves, which the kernel takes from the page cache
into the socket, and the frame's CRLF: the data never enters Python, and the bytes on the
wire are those frame_message would have written.

The contract is Job.follow's, which the Garden front end and log forwarding keep using: both
files from their start until the job is done, stdout and stderr taking turns, at most `limit`
plus one read chunk in all (facts §6.4), no empty chunks. The files stay the job's record, so
output survives a restart as before.

The event loop never waits on the disk: a chunk whose pages are not in the page cache (old
output, evicted) is read into it by a worker thread first.

What a stream has sent leaves the page cache a window behind it (`_let_go`). Kept, a job
writing 1 GiB holds 1 GiB of memory, and each stream fills pages the allocator has not
handed out for a while; on a VM whose host takes free memory back (virtio free page
reporting, as on the benchmark's Firecracker VM) such pages are slow to touch, and the
copy into them was the stream's bottleneck. Let go, the pages come back to the job's
writer warm: a stream of 1 GiB went from ~0.5 to ~1.2-1.7 GB/s there. The output stays
in the file, written back to disk; a later read of it (a second stream, Link) reads it in.
Letting go runs in a worker thread too: starting write-back can wait for the disk's queue
(on the loop it took 0.1 ms a chunk at the median, but 2.3-3.9 ms at p99 and up to 8.5 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from typing import BinaryIO

from ..jobs import CHUNK, FOLLOW_INTERVAL, READ_CHUNK, Job
from ..protocol.output_chunk import TRAILER, chunk_head

log = logging.getLogger(__name__)

OUTPUTS = ("stdout", "stderr")
# The send buffer of a connection once it streams, kept for the connection's life (the
# kernel doubles it, up to twice net.core.wmem_max). The default ~200 KiB splits every
# megabyte chunk into five sends, each waking the client: 4 MiB took 1 GiB from ~1.0 to
# ~1.5 GB/s on the loaded 2-CPU VM. What sendfile queues there are the page cache's pages,
# lent, not copies.
STREAM_SNDBUF = 4 << 20
# How far behind the stream its pages are let go: by then their write-back, started when
# they were sent, is done, and dirty pages are not dropped. Windows of 16-128 MiB streamed
# alike; 2 MiB was ~40% slower.
LET_GO_BEHIND = 16 << 20


async def send_output(writer: asyncio.StreamWriter, job: Job, limit: int) -> int:
    """Write `job`'s output to `writer` as StreamResponse{name, data} frames until the job
    is done and both files are sent (or `limit` plus READ_CHUNK bytes are); return the data
    bytes sent. A lost client raises ConnectionError; the job is left as it is."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):  # a smaller buffer only costs speed
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
    loop = asyncio.get_running_loop()
    limit += READ_CHUNK
    sent = 0
    with contextlib.ExitStack() as stack:
        files = {name: _open(stack, path)
                 for name, path in zip(OUTPUTS, (job.stdout_path, job.stderr_path))}
        offsets = dict.fromkeys(OUTPUTS, 0)
        let_go = dict.fromkeys(OUTPUTS, 0)
        while True:
            finished = job.done  # read before draining, so no output written before exit is lost
            progressed = False
            for name, f in files.items():
                if f is None or sent >= limit:
                    continue
                size = min(os.fstat(f.fileno()).st_size - offsets[name], CHUNK, limit - sent)
                if size <= 0:
                    continue
                await _send_chunk(writer, sock.fileno(), name, f, offsets[name], size)
                let_go[name] = await loop.run_in_executor(None, _let_go, f.fileno(), let_go[name],
                                                          offsets[name], size)
                offsets[name] += size
                sent += size
                progressed = True
            if finished and not progressed:
                return sent
            if not progressed:
                await asyncio.sleep(FOLLOW_INTERVAL)


async def _send_chunk(writer: asyncio.StreamWriter, sock_fd: int, name: str, f: BinaryIO,
                      offset: int, size: int) -> None:
    """One frame: head, `size` bytes of `f` from `offset`, CRLF.

    While nothing waits in the transport's buffer, the bytes go by one sendfile straight on
    the socket; what the socket does not take then, loop.sendfile sends as it drains. The
    bytes were in the file when its size was read, and output files only grow; if one shrank
    all the same, the frame cannot be completed and the connection is given up."""
    loop = asyncio.get_running_loop()
    transport = writer.transport
    if not _cached(f.fileno(), offset, size):
        await loop.run_in_executor(None, os.pread, f.fileno(), size, offset)
    _check_open(transport, f)
    writer.write(chunk_head(name, size))
    copied = 0
    if not transport.get_write_buffer_size():
        copied = _sendfile_now(sock_fd, f.fileno(), offset, size)
    if copied < size:
        _check_open(transport, f)  # the write above may have found the client gone
        copied += await loop.sendfile(transport, f, offset + copied, size - copied)
    else:
        await asyncio.sleep(0)  # the socket took it all: let other connections have a turn
    if copied != size:
        log.warning("stream of %s: %d of %d bytes from offset %d: the file shrank; closing "
                    "the connection", f.name, copied, size, offset)
        raise ConnectionAbortedError(f"stream of {f.name}: the file shrank under the stream")
    writer.write(TRAILER)


def _let_go(fd: int, let_go: int, offset: int, size: int) -> int:
    """After the range [offset, offset + size) was sent: start its write-back, and drop from
    the page cache what lies between `let_go` and LET_GO_BEHIND before the range's end;
    return where the dropped part now ends. POSIX_FADV_DONTNEED writes dirty pages back
    (without waiting) and drops only clean ones that nothing else holds: pages still queued
    in the socket stay until the client has read them, and no byte leaves the file."""
    with contextlib.suppress(OSError):  # advice only: a file system without it streams as before
        os.posix_fadvise(fd, offset, size, os.POSIX_FADV_DONTNEED)
        behind = offset + size - LET_GO_BEHIND
        if behind > let_go:
            os.posix_fadvise(fd, let_go, behind - let_go, os.POSIX_FADV_DONTNEED)
            return behind
    return let_go


def _check_open(transport: asyncio.BaseTransport, f: BinaryIO) -> None:
    if transport.is_closing():
        raise ConnectionResetError(f"stream of {f.name}: the client is gone")


def _sendfile_now(sock_fd: int, file_fd: int, offset: int, size: int) -> int:
    """What the socket takes of the range at once, by one sendfile; 0 when it is full or the
    file system cannot sendfile (loop.sendfile then reads and writes). A lost client raises
    ConnectionError."""
    try:
        return os.sendfile(sock_fd, file_fd, offset, size)
    except (BlockingIOError, InterruptedError):
        return 0
    except ConnectionError:
        raise
    except OSError as exc:
        log.debug("sendfile refused (%s): the stream reads and writes", os.strerror(exc.errno))
        return 0


def _cached(fd: int, offset: int, size: int) -> bool:
    """Whether the first and last byte of the range are in the page cache, as far as a read
    that must not wait (RWF_NOWAIT) can tell; True where the file system cannot tell."""
    probe = bytearray(1)
    for at in (offset, offset + size - 1):
        try:
            os.preadv(fd, [probe], at, os.RWF_NOWAIT)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                return True
            raise
    return True


def _open(stack: contextlib.ExitStack, path: os.PathLike) -> BinaryIO | None:
    try:
        return stack.enter_context(open(path, "rb", buffering=0))
    except FileNotFoundError:
        return None
