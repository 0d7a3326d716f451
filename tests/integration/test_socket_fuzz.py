"""Bad input on the server's socket: garbage, truncated frames, huge length prefixes, payloads
that are not protobuf, unknown message types, slow-loris clients and random bytes. The
server (in-process, fake drivers: this is the socket layer) answers what it can, closes only
the offending connection, never crashes, keeps answering a normal client, and does not
allocate memory for lengths it was only promised."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warden_framework.client import Client
from warden_framework.protocol import (
    FrameDecoder,
    decode_message,
    encode_frame,
    frame_message,
    pb,
)
from warden_framework.testing.fakes import FAKE_DRIVERS, _Fake
from warden_framework.testing.server import fake_settings, running_server

MAX_FRAME = 16 * 1024 * 1024
READ_TIMEOUT = 10.0  # a reply or close not seen in this long counts as a hang


@pytest.fixture
def server(tmp_path):
    _Fake.fail_on = set()
    config = fake_settings(tmp_path, server={"max_frame_bytes": MAX_FRAME})
    with running_server(config, FAKE_DRIVERS) as srv:
        yield srv
        # whatever the test sent, the server's loop is still running
        assert srv._thread.is_alive() and srv.error is None


@pytest.fixture
def path(server):
    return server.settings.server.unix_domain_path


@pytest.fixture
def client(path):
    with Client(path) as c:
        yield c


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (EOF or reset)."""
    sock.settimeout(READ_TIMEOUT)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def responses(data: bytes) -> list:
    """The server's bytes as response messages; fails if they are not well-formed frames."""
    return [decode_message(frame, response=True) for frame in FrameDecoder(MAX_FRAME).feed(data)]


def exchange(path: str, data: bytes, *, half_close: bool = False) -> list:
    """Send `data` on a new connection; return every response until the server closes it."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server already gave up on this connection; its reply is still queued
        return responses(read_to_close(sock))


def error_texts(answers: list) -> list[str]:
    assert all(isinstance(a, pb.ErrorResponse) for a in answers), answers
    return [a.message.decode() for a in answers]


def envelope(type_code: int, payload: bytes) -> bytes:
    return encode_frame(pb.Message(type=type_code, payload=payload).SerializeToString())


def assert_alive(client: Client) -> None:
    assert isinstance(client.ping(), pb.PingResponse)
    assert client.echo(message=b"still here").message == b"still here"


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# -- one bad input at a time ---------------------------------------------------------------

@pytest.mark.parametrize("garbage", [b"hello world\r\n", b"\x00\xff\r\n\r\n", b"-5\r\nabc\r\n",
                                     b"\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"])
def test_garbage_is_answered_and_closes_only_its_connection(path, client, garbage):
    texts = error_texts(exchange(path, garbage))
    assert len(texts) == 1 and texts[0].startswith("frame length prefix is not a decimal number")
    assert_alive(client)


def test_truncated_frames(path, client):
    # a prefix promising more than ever comes: nothing to answer, closed at EOF
    assert exchange(path, b"100\r\n" + b"x" * 10, half_close=True) == []
    assert exchange(path, b"12", half_close=True) == []
    # a payload not followed by CRLF
    texts = error_texts(exchange(path, b"3\r\nabcXY"))
    assert texts == ["frame of 3 bytes is not followed by CRLF (got b'XY')"]
    assert_alive(client)


@pytest.mark.parametrize("length", [MAX_FRAME + 1, 99_999_999_999, 10 ** 19])
def test_huge_length_prefix_names_the_cap(path, client, length):
    texts = error_texts(exchange(path, b"%d\r\n" % length))
    assert texts == [f"frame of {length} bytes exceeds the maximum of {MAX_FRAME} bytes"]
    assert_alive(client)


def test_prefix_without_crlf_is_refused(path, client):
    texts = error_texts(exchange(path, b"0" * 25))
    assert texts == ["frame length prefix has no CRLF within 20 bytes: b'" + "0" * 20 + "'"]
    assert_alive(client)


@pytest.mark.parametrize("payload, text", [
    (b"\xff\xff\xff\xff", "undecodable envelope"),
    (b"", "Message: field type is required but missing"),
    (b"\x08\x11", "Message: field payload is required but missing"),
])
def test_valid_length_non_protobuf_payload(path, client, payload, text):
    texts = error_texts(exchange(path, encode_frame(payload)))
    assert len(texts) == 1 and texts[0].startswith(text)
    assert_alive(client)


@pytest.mark.parametrize("type_code, payload, text", [
    (99, b"", "Unknown request type: 99"),
    (1, b"", "Unknown request type: 1"),  # ErrorResponse is no request
    (pb.Message.Ping, b"\xff\xff", "undecodable PingRequest"),
    (pb.Message.Echo, b"", "EchoRequest: field message is required but missing"),
])
def test_unknown_or_broken_messages(path, client, type_code, payload, text):
    texts = error_texts(exchange(path, envelope(type_code, payload)))
    assert len(texts) == 1 and texts[0].startswith(text)
    assert_alive(client)


def test_requests_before_a_bad_frame_are_answered_first(path, client):
    """Regression: frames completed in the same read as a bad one were dropped unanswered."""
    data = (frame_message(pb.EchoRequest(message=b"one")) + frame_message(pb.PingRequest())
            + frame_message(pb.EchoRequest(message=b"two")) + b"garbage\r\n")
    answers = exchange(path, data)
    assert [type(a).__name__ for a in answers] == [
        "EchoResponse", "PingResponse", "EchoResponse", "ErrorResponse"]
    assert (answers[0].message, answers[2].message) == (b"one", b"two")
    assert answers[3].message.startswith(b"frame length prefix is not a decimal number")
    assert_alive(client)


# -- memory ------------------------------------------------------------------------------

def open_many(path: str, count: int, first_bytes: bytes) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        sock.sendall(first_bytes)
        socks.append(sock)
    return socks


def refuse_many(path: str, count: int) -> None:
    """`count` connections at once, each announcing 4x the cap and sending 64 KiB of it."""
    refused = open_many(path, count, b"%d\r\n" % (4 * MAX_FRAME) + b"x" * 65536)
    try:
        for sock in refused:
            texts = error_texts(responses(read_to_close(sock)))
            assert texts == [
                f"frame of {4 * MAX_FRAME} bytes exceeds the maximum of {MAX_FRAME} bytes"]
    finally:
        for sock in refused:
            sock.close()


def rss_growth_while_promised(path: str, client: Client, count: int, before: int) -> int:
    """Hold `count` connections that announced a frame of exactly the cap and sent 4 KiB of
    it; return the RSS growth since `before` while they are open."""
    promised = open_many(path, count, b"%d\r\n" % MAX_FRAME + b"y" * 4096)
    try:
        assert_alive(client)  # the server has read what they sent
        return rss_bytes() - before
    finally:
        for sock in promised:
            sock.close()


def test_huge_length_prefixes_allocate_nothing(path, client):
    refuse_many(path, 20)  # warm up: first-use allocations are not growth
    rss_growth_while_promised(path, client, 20, 0)
    before = rss_bytes()
    refuse_many(path, 200)
    growth = rss_growth_while_promised(path, client, 200, before)
    print(f"\nRSS growth over 400 connections: {growth / 2**20:.1f} MiB")
    # 200 buffers of the announced 16 MiB would be 3.2 GiB
    assert growth < 50 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert_alive(client)


# -- slow loris, with other bad clients and a normal one -----------------------------------

async def slow_loris(path: str, n: int) -> bytes:
    """Send one echo frame a byte per 100 ms; return the echoed message."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        message = b"loris-%d" % n
        for byte in frame_message(pb.EchoRequest(message=message)):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)  # the attack's pace, not synchronisation
        decoder = FrameDecoder(MAX_FRAME)
        frames: list[bytes] = []
        while not frames:
            data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
            assert data, "server closed a slow but valid connection"
            frames = decoder.feed(data)
        return decode_message(frames[0], response=True).message
    finally:
        writer.close()


async def garbage_sender(path: str, loris_done: asyncio.Event) -> int:
    """Open connections that send bad input until the slow clients are done; count them."""
    bad = [b"nonsense\r\n", b"%d\r\n" % (MAX_FRAME * 2), encode_frame(b"\xff" * 8),
           envelope(77, b"")]
    sent = 0
    while not loris_done.is_set():
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(bad[sent % len(bad)])
        assert await asyncio.wait_for(reader.read(), READ_TIMEOUT)  # error frame, then EOF
        writer.close()
        sent += 1
        await asyncio.sleep(0.01)
    return sent


async def normal_client(path: str, loris_done: asyncio.Event) -> int:
    """Ping and echo on one connection until the slow clients are done; count the answers
    that came while they were still sending."""
    reader, writer = await asyncio.open_unix_connection(path)
    decoder = FrameDecoder(MAX_FRAME)
    answered = 0
    try:
        while not loris_done.is_set():
            writer.write(frame_message(pb.PingRequest())
                         + frame_message(pb.EchoRequest(message=b"%d" % answered)))
            frames: list[bytes] = []
            while len(frames) < 2:
                data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
                assert data, "server closed the normal client"
                frames += decoder.feed(data)
            ping, echo = (decode_message(f, response=True) for f in frames)
            assert isinstance(ping, pb.PingResponse) and echo.message == b"%d" % answered
            answered += 1
            await asyncio.sleep(0.02)
        return answered
    finally:
        writer.close()


async def slow_loris_scene(path: str) -> tuple[list[bytes], int, int]:
    loris_done = asyncio.Event()
    side = [asyncio.create_task(normal_client(path, loris_done)),
            asyncio.create_task(garbage_sender(path, loris_done))]
    try:
        echoed = await asyncio.gather(*(slow_loris(path, n) for n in range(50)))
    finally:
        loris_done.set()
    answered, garbage = await asyncio.gather(*side)
    return echoed, answered, garbage


def test_slow_loris_clients_block_nobody(path, client):
    echoed, answered, garbage = asyncio.run(asyncio.wait_for(slow_loris_scene(path), 25))
    assert echoed == [b"loris-%d" % n for n in range(50)]
    assert answered > 0 and garbage > 0
    assert_alive(client)


# -- random input --------------------------------------------------------------------------

FRAME_PIECES = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(encode_frame),
    st.tuples(st.integers(min_value=0, max_value=120), st.binary(max_size=64)).map(
        lambda t: envelope(*t)),
    st.sampled_from([frame_message(pb.PingRequest()), frame_message(pb.ListRequest()),
                     b"\r\n", b"0\r\n", b"99999999999999\r\n"]),
)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=512))
def test_random_bytes(path, client, raw):
    answers = exchange(path, raw, half_close=True)  # every reply is a well-formed response
    assert all(type(a).__name__.endswith("Response") for a in answers)
    assert_alive(client)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(FRAME_PIECES, max_size=8))
def test_random_frames(path, client, pieces):
    answers = exchange(path, b"".join(pieces), half_close=True)
    assert all(type(a).__name__.endswith("Response") for a in answers)
    assert_alive(client)

