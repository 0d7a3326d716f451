"""Stream answers sent from the job's files (server/stream_out.py), through a whole server on
fake drivers (jobs run in the host's bash and write their files themselves): exactly the
job's bytes, in order, in frames protobuf would have written, within the output limit."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import mmap
import os
import secrets
import socket
import time

import pytest

from warden_framework.client import Client
from warden_framework.container import handle_from_wire
from warden_framework.jobs import CHUNK, READ_CHUNK
from warden_framework.protocol import (
    FrameDecoder,
    decode_message,
    encode_frame,
    frame_message,
    pb,
)
from warden_framework.server import stream_out
from warden_framework.testing.fakes import FAKE_DRIVERS
from warden_framework.testing.server import fake_settings, running_server

BIG_LIMIT = 16 << 20
SMALL_LIMIT = 2 * CHUNK + 1000


@pytest.fixture
def serve(tmp_path):
    """serve(limit) -> a started server (ServerThread) with that job_output_limit; each is
    stopped and cleaned up after the test, failed or not."""
    with contextlib.ExitStack() as stack:
        def start(limit: int):
            settings = fake_settings(tmp_path / secrets.token_hex(3),
                                     server={"job_output_limit": limit})
            return stack.enter_context(running_server(settings, FAKE_DRIVERS))

        yield start


def data_file(tmp_path, size: int) -> tuple[str, bytes]:
    data = secrets.token_bytes(size)
    path = tmp_path / f"data-{secrets.token_hex(4)}"
    path.write_bytes(data)
    return str(path), data


def stream_all(client: Client, handle: bytes, job_id: int):
    frames = list(client.stream(handle=handle, job_id=job_id))
    out = b"".join(f.data for f in frames if f.name == "stdout")
    err = b"".join(f.data for f in frames if f.name == "stderr")
    return frames, out, err


def check_chunks(frames) -> None:
    chunks, terminal = frames[:-1], frames[-1]
    assert all(0 < len(f.data) <= CHUNK and f.name in ("stdout", "stderr") for f in chunks)
    assert terminal.HasField("exit_status") and not terminal.HasField("name")


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 1, 3 * CHUNK])
def test_stream_delivers_exactly_the_jobs_bytes_in_order(serve, tmp_path, size):
    out_path, out_data = data_file(tmp_path, size)
    err_path, err_data = data_file(tmp_path, size // 3 + 1)
    with Client(path_of(serve(BIG_LIMIT))) as client:
        h = client.create().handle
        job = client.spawn(handle=h, script=f"cat {out_path}; cat {err_path} >&2; exit 3".encode())
        frames, out, err = stream_all(client, h, job.job_id)
    assert hashlib.sha256(out).digest() == hashlib.sha256(out_data).digest() and out == out_data
    assert err == err_data
    check_chunks(frames)
    assert frames[-1].exit_status == 3 and frames[-1].info.state == "active"


def test_stream_follows_output_written_while_it_runs(serve, tmp_path):
    pieces = [data_file(tmp_path, n) for n in (CHUNK + 7, 1, 300_000, CHUNK - 1, 5)]
    script = "".join(f"cat {path}; sleep 0.05; " for path, _ in pieces) + "printf end >&2"
    with Client(path_of(serve(BIG_LIMIT))) as client:
        h = client.create().handle
        job = client.spawn(handle=h, script=script.encode())
        frames, out, err = stream_all(client, h, job.job_id)
    assert out == b"".join(data for _, data in pieces) and err == b"end"
    check_chunks(frames)


def test_stream_stops_one_read_chunk_past_the_output_limit(serve, tmp_path):
    path, data = data_file(tmp_path, 5 * CHUNK)
    with Client(path_of(serve(SMALL_LIMIT))) as client:
        h = client.create().handle
        job = client.spawn(handle=h, script=f"cat {path}; sleep 5".encode())
        frames, out, err = stream_all(client, h, job.job_id)
    # Killed once past the limit; what the file held up to the limit plus one chunk came.
    assert SMALL_LIMIT < len(out) <= SMALL_LIMIT + READ_CHUNK and err == b""
    assert out == data[:len(out)]
    check_chunks(frames)
    assert frames[-1].exit_status == 255


def test_stream_of_a_finished_job_past_the_limit_is_cut_exactly(serve, tmp_path):
    out_path, out_data = data_file(tmp_path, 3 * CHUNK)
    err_path, err_data = data_file(tmp_path, 3 * CHUNK)
    srv = serve(SMALL_LIMIT)
    with Client(path_of(srv)) as client:
        h = client.create().handle
        job = client.spawn(handle=h, script=f"cat {out_path}; cat {err_path} >&2".encode())
        finished = wait_until_done(srv, h, job.job_id)
        # Killed for the limit, maybe before the second cat: the files as they ended.
        sizes = {"stdout": finished.stdout_path.stat().st_size,
                 "stderr": finished.stderr_path.stat().st_size}
        frames, out, err = stream_all(client, h, job.job_id)
    assert sizes["stdout"] > SMALL_LIMIT
    assert {"stdout": len(out), "stderr": len(err)} == in_turns(sizes, SMALL_LIMIT + READ_CHUNK)
    assert out == out_data[:len(out)] and err == err_data[:len(err)]
    check_chunks(frames)
    assert frames[-1].exit_status == 255


def in_turns(sizes: dict[str, int], budget: int) -> dict[str, int]:
    """What a stream sends of each complete file: a chunk of stdout, one of stderr, and so
    on, until `budget` bytes are sent."""
    sent = dict.fromkeys(sizes, 0)
    while budget and any(sent[name] < size for name, size in sizes.items()):
        for name, size in sizes.items():
            take = min(CHUNK, size - sent[name], budget)
            sent[name] += take
            budget -= take
    return sent


def test_stream_frames_are_byte_identical_to_protobufs(serve, tmp_path):
    path, _ = data_file(tmp_path, 2 * CHUNK + 127)
    socket_path = path_of(serve(BIG_LIMIT))
    with Client(socket_path) as client:
        h = client.create().handle
        job_id = client.spawn(handle=h, script=f"cat {path}; echo e >&2".encode()).job_id
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(socket_path)
        raw.sendall(frame_message(pb.StreamRequest(handle=h, job_id=job_id)))
        decoder, payloads, responses = FrameDecoder(max_frame=BIG_LIMIT), [], []
        while not responses or not responses[-1].HasField("exit_status"):
            data = raw.recv(1 << 16)
            assert data, "the server closed the stream before its end"
            for payload in decoder.feed(data):
                payloads.append(payload)
                responses.append(decode_message(payload, response=True))
    for payload, response in zip(payloads[:-1], responses[:-1]):
        reference = pb.Message(type=pb.Message.Stream,
                               payload=pb.StreamResponse(name=response.name,
                                                         data=response.data).SerializeToString())
        assert encode_frame(payload) == encode_frame(reference.SerializeToString())
    assert sum(len(r.data) for r in responses if r.name == "stdout") == 2 * CHUNK + 127


def test_a_client_leaving_mid_stream_leaves_the_job_to_stream_again(serve, tmp_path, caplog):
    path, data = data_file(tmp_path, 3 * CHUNK)
    socket_path = path_of(serve(BIG_LIMIT))
    with Client(socket_path) as client:
        h = client.create().handle
        job_id = client.spawn(handle=h, script=f"cat {path}; sleep 0.3".encode()).job_id
        first = client.stream(handle=h, job_id=job_id)
        assert len(next(first).data) > 0
        first.close()  # disconnects with chunks unread
        assert not client.connected
    with Client(socket_path) as client:
        frames, out, _ = stream_all(client, h, job_id)
        assert out == data and frames[-1].exit_status == 0
    # A client gone ends the connection quietly: no failed request, no sends into a dead socket.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_output_no_longer_in_the_page_cache_is_read_in_first(serve, tmp_path, monkeypatch):
    path, data = data_file(tmp_path, 2 * CHUNK + 5)
    srv = serve(BIG_LIMIT)
    with Client(path_of(srv)) as client:
        h = client.create().handle
        job_id = client.spawn(handle=h, script=f"cat {path}".encode()).job_id
        with open(wait_until_done(srv, h, job_id).stdout_path, "rb") as output:
            os.fsync(output.fileno())
            os.posix_fadvise(output.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            # mincore, not the stream's own probe: a read with RWF_NOWAIT may start the
            # readahead it then does not wait for, and the pages were in before the stream.
            if cached_share(output, 0, CHUNK) > 0:
                pytest.skip("the kernel kept the output file's pages after POSIX_FADV_DONTNEED")
        seen = []
        real = stream_out._cached
        monkeypatch.setattr(stream_out, "_cached", lambda *a: seen.append(real(*a)) or seen[-1])
        frames, out, _ = stream_all(client, h, job_id)
    assert out == data and frames[-1].exit_status == 0
    assert seen[0] is False  # the first chunk went through the worker's read


def test_a_stream_lets_go_of_the_pages_it_sent(serve, tmp_path):
    """Sent output is dropped from the page cache a window behind the stream and stays whole
    in the file: the client got every byte, and the file (held open here, since a streamed
    job is forgotten) still reads back as written."""
    size = 3 * stream_out.LET_GO_BEHIND
    path, data = data_file(tmp_path, size)
    srv = serve(2 * size)
    with Client(path_of(srv)) as client, contextlib.ExitStack() as stack:
        h = client.create().handle
        job_id = client.spawn(handle=h, script=f"cat {path}".encode()).job_id
        output = stack.enter_context(open(wait_until_done(srv, h, job_id).stdout_path, "rb"))
        if cached_share(output, 0, size) < 1:
            pytest.skip(f"the kernel did not keep {output.name}'s fresh pages cached")
        _, streamed, _ = stream_all(client, h, job_id)
        # Write-back started as each chunk was sent, so by the window's end nearly all of
        # what lies before it is clean and gone; without letting go, all of it stays.
        assert cached_share(output, 0, size - stream_out.LET_GO_BEHIND - CHUNK) < 0.5
        assert streamed == data and output.read() == data


def cached_share(f, start: int, end: int) -> float:
    """The share of the open file's pages in [start, end) that are in the page cache
    (mincore(2) over a read-only mapping, which reads nothing in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    length = end - start
    pages = -(-length // mmap.PAGESIZE)
    address = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), start)
    if address == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), f"mmap {f.name}")
    try:
        residency = (ctypes.c_ubyte * pages)()
        if libc.mincore(address, length, residency) != 0:
            raise OSError(ctypes.get_errno(), f"mincore {f.name}")
    finally:
        libc.munmap(address, length)
    return sum(byte & 1 for byte in residency) / pages


def path_of(srv) -> str:
    return srv.settings.server.unix_domain_path


def wait_until_done(srv, handle: bytes, job_id: int):
    """Poll the server (running in this process) until the job ended; the Job."""
    orchestrator = srv.orchestrator
    container = orchestrator.lookup(handle_from_wire(handle))
    job = orchestrator.find_job(container, job_id)
    deadline = time.monotonic() + 10
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.done, f"job {job_id} did not end"
    return job
