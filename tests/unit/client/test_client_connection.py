"""The sync and asyncio clients against a fake server: calls, errors, EOF, streams."""

from __future__ import annotations

import asyncio

import pytest

from warden_framework.client import AsyncClient, Client, ServerError, build_request
from warden_framework.protocol import FrameError, error_response, pb

STREAM = [
    pb.StreamResponse(name="stdout", data=b"out\xff"),
    pb.StreamResponse(name="stderr", data=b"err"),
    pb.StreamResponse(exit_status=3, info=pb.InfoResponse(state="active")),
]


def answer(request):
    """A tiny server: echo, errors for unknown handles, a fixed job stream."""
    if isinstance(request, pb.PingRequest):
        return [pb.PingResponse()]
    if isinstance(request, pb.EchoRequest):
        return [pb.EchoResponse(message=request.message)]
    if isinstance(request, pb.StreamRequest):
        return STREAM if request.job_id == 1 else [error_response("no such job")]
    if isinstance(request, pb.CreateRequest):
        return [pb.CreateResponse(handle=request.handle or b"generated")]
    if isinstance(request, pb.DestroyRequest):
        return None  # the server hangs up
    return [error_response("unknown handle")]


@pytest.fixture
def server(fake_server):
    return fake_server(answer)


@pytest.fixture
def client(server):
    with Client(server.path, timeout=10) as connected:
        yield connected


def test_call_returns_the_response(client):
    assert client.call(pb.EchoRequest(message=b"hi")) == pb.EchoResponse(message=b"hi")
    assert client.ping() == pb.PingResponse()


def test_request_methods_build_requests_from_arguments(client, server):
    mount = {"src_path": "/a", "dst_path": "/b", "mode": "rw"}
    response = client.create(handle="h1", bind_mounts=[mount])
    assert response.handle == b"h1"
    expected = pb.BindMount(src_path=b"/a", dst_path=b"/b", mode=pb.BindMount.RW)
    assert server.requests[-1] == pb.CreateRequest(handle=b"h1", bind_mounts=[expected])


def test_error_response_raises_server_error_and_keeps_the_connection(client):
    with pytest.raises(ServerError) as caught:
        client.info("nope")
    assert caught.value.message == "unknown handle"
    assert str(caught.value) == "unknown handle"
    assert client.connected
    assert client.echo("still here").message == b"still here"


def test_server_closing_raises_eof_and_disconnects(client):
    with pytest.raises(EOFError):
        client.destroy("h")
    assert not client.connected


def test_reconnect_after_eof_works(client):
    with pytest.raises(EOFError):
        client.destroy("h")
    client.reconnect()
    assert client.ping() == pb.PingResponse()


def test_calls_connect_on_demand(server):
    client = Client(server.path, timeout=10)
    try:
        assert client.ping() == pb.PingResponse()
        assert client.connected
    finally:
        client.disconnect()
    assert not client.connected


def test_connect_without_server_raises_file_not_found(socket_dir):
    with pytest.raises(FileNotFoundError):
        Client(socket_dir / "missing.sock").connect()


def test_pipelined_requests_are_answered_in_order(client):
    for word in (b"a", b"b", b"c"):
        client.write(pb.EchoRequest(message=word))
    assert [client.read().message for _ in range(3)] == [b"a", b"b", b"c"]


def test_stream_yields_chunks_until_exit_status(client):
    responses = list(client.stream("h", 1))
    assert responses == STREAM
    assert client.ping() == pb.PingResponse()


def test_stream_accepts_a_request(client):
    responses = list(client.stream(pb.StreamRequest(handle=b"h", job_id=1)))
    assert responses[-1].exit_status == 3


def test_stream_error_raises_server_error_and_keeps_the_connection(client):
    with pytest.raises(ServerError, match="no such job"):
        list(client.stream("h", 2))
    assert client.connected
    assert client.ping() == pb.PingResponse()


def test_abandoned_stream_disconnects(client, server):
    responses = client.stream("h", 1)
    assert next(responses).data == b"out\xff"
    responses.close()
    assert not client.connected
    assert server.closed.wait(10)


def test_malformed_response_stream_raises_frame_error_and_disconnects(fake_server):
    server = fake_server(lambda request: b"junk\r\n")
    with Client(server.path, timeout=10) as client:
        with pytest.raises(FrameError):
            client.ping()
        assert not client.connected


def test_build_request_encodes_str_as_utf8_and_takes_required_fields_positionally():
    request = build_request("run", "hé", "echo", privileged=True, rlimits={"as": 5})
    limits = pb.ResourceLimits(**{"as": 5})
    assert request == pb.RunRequest(
        handle="hé".encode(), script=b"echo", privileged=True, rlimits=limits
    )


def test_async_client_calls_and_streams(server):
    async def scenario():
        async with AsyncClient(server.path) as client:
            echoed = await client.echo(b"x")
            chunks = [response async for response in client.stream("h", 1)]
            with pytest.raises(ServerError, match="unknown handle"):
                await client.info("h")
            pong = await client.call(pb.PingRequest())
            return echoed, chunks, pong

    echoed, chunks, pong = asyncio.run(scenario())
    assert echoed.message == b"x"
    assert chunks == STREAM
    assert pong == pb.PingResponse()


def test_async_client_raises_eof_when_the_server_closes(server):
    async def scenario():
        client = AsyncClient(server.path)
        await client.connect()
        try:
            with pytest.raises(EOFError):
                await client.destroy("h")
            return client.connected
        finally:
            await client.disconnect()

    assert asyncio.run(scenario()) is False


def test_async_stream_error_raises_server_error(server):
    async def scenario():
        async with AsyncClient(server.path) as client:
            with pytest.raises(ServerError, match="no such job"):
                async for _ in client.stream(pb.StreamRequest(handle=b"h", job_id=9)):
                    pass
            return await client.ping()

    assert asyncio.run(scenario()) == pb.PingResponse()
