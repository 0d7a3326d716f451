"""Load: 50 concurrent connections mixing create, run, spawn+stream, info and destroy on real
containers, with pipelined requests checked for order and a side connection pinging every
20 ms. Asserts completion (no deadlock), order, no errors, every ping answered, and that
nothing is left behind: no container in the server, no directory in the depot (the autouse
leak checker covers the kernel)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time

import pytest

from warden_framework.client import AsyncClient, ServerError
from warden_framework.protocol import pb
from warden_framework.testing.server import running_server

from .conftest import _missing, server_settings

CLIENTS = 50
DEADLINE = 120.0  # overall bound: completion, not speed
PING_EVERY = 0.02
PING_HANG = 30.0  # a ping unanswered this long counts as never answered


@pytest.fixture
def loaded_warden(tmp_path):
    """A real in-process server with pools big enough for CLIENTS containers at once."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    network = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.0/24"
    settings = server_settings(tmp_path, user={"pool_size": 64},
                               network={"pool_network": network},
                               drivers={"network": "iptables"})
    with running_server(settings) as srv:
        yield srv


async def pipelined(client: AsyncClient, requests: list) -> list:
    """Write every request before reading any response; return the responses in order."""
    for request in requests:
        await client.write(request)
    return [await client.read() for _ in requests]


async def worker(path: str, n: int) -> list[str]:
    """One client's small session; returns the request types it completed, in order."""
    done = []
    tag = f"w{n}".encode()
    async with AsyncClient(path) as c:
        handle = (await c.create()).handle
        done.append("create")
        for i in range(3):
            resp = await c.run(handle=handle, script=b"echo %b-%d" % (tag, i))
            assert (resp.exit_status, resp.stdout) == (0, b"%b-%d\n" % (tag, i))
            done.append("run")
        script = b"for i in 1 2 3; do echo $i; done; exit 7"
        job = (await c.spawn(handle=handle, script=script)).job_id
        frames = [f async for f in c.stream(handle=handle, job_id=job)]
        assert b"".join(f.data for f in frames if f.name == "stdout") == b"1\n2\n3\n"
        assert frames[-1].exit_status == 7
        done.append("stream")
        # slow and fast requests pipelined on one connection come back in request order
        answers = await pipelined(c, [
            pb.EchoRequest(message=tag + b"-a"), pb.InfoRequest(handle=handle),
            pb.EchoRequest(message=tag + b"-b"),
            pb.RunRequest(handle=handle, script=b"echo " + tag),
            pb.EchoRequest(message=tag + b"-c")])
        assert [type(a).__name__ for a in answers] == [
            "EchoResponse", "InfoResponse", "EchoResponse", "RunResponse", "EchoResponse"]
        assert [answers[i].message for i in (0, 2, 4)] == [tag + b"-a", tag + b"-b", tag + b"-c"]
        assert answers[1].state == "active" and answers[3].stdout == tag + b"\n"
        done.append("pipeline")
        await c.destroy(handle=handle)
        done.append("destroy")
    return done


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Pace a side task: return after `seconds`, or at once when `stop` is set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def pinger(path: str, stop: asyncio.Event) -> tuple[int, int, float]:
    """Ping every PING_EVERY s until `stop`; return (sent, answered, slowest answer in s)."""
    sent = answered = 0
    slowest = 0.0
    async with AsyncClient(path) as c:
        while not stop.is_set():
            sent += 1
            start = time.monotonic()
            resp = await asyncio.wait_for(c.ping(), PING_HANG)
            slowest = max(slowest, time.monotonic() - start)
            answered += isinstance(resp, pb.PingResponse)
            await pause(stop, PING_EVERY)
    return sent, answered, slowest


async def echo_pipeliner(path: str, stop: asyncio.Event) -> int:
    """Pipeline batches of 10 distinct echoes on one connection until `stop`; check order."""
    batches = 0
    async with AsyncClient(path) as c:
        while not stop.is_set():
            payloads = [b"batch-%d-%d" % (batches, i) for i in range(10)]
            answers = await pipelined(c, [pb.EchoRequest(message=p) for p in payloads])
            assert [a.message for a in answers] == payloads
            batches += 1
            await pause(stop, 0.01)
    return batches


async def load(path: str) -> tuple[list, tuple[int, int, float], int, float]:
    stop = asyncio.Event()
    ping_task = asyncio.create_task(pinger(path, stop))
    echo_task = asyncio.create_task(echo_pipeliner(path, stop))
    start = time.monotonic()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(worker(path, n) for n in range(CLIENTS)), return_exceptions=True),
            DEADLINE)
    finally:
        elapsed = time.monotonic() - start
        stop.set()
    pings = await ping_task
    batches = await echo_task
    return results, pings, batches, elapsed


def server_complaints(caplog) -> list[str]:
    """What the in-process server logged at WARNING or above: a failed request or task."""
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("warden") and r.levelno >= logging.WARNING]


def test_fifty_clients_mixing_requests(loaded_warden, caplog):
    caplog.set_level(logging.WARNING)
    path = loaded_warden.settings.server.unix_domain_path
    results, (sent, answered, slowest), batches, elapsed = asyncio.run(load(path))

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], f"{len(errors)} of {CLIENTS} clients failed, first: {errors[:1]!r}"
    expected = ["create", "run", "run", "run", "stream", "pipeline", "destroy"]
    assert all(r == expected for r in results)
    assert sent == answered and answered > 0
    assert batches > 0
    print(f"\n{CLIENTS} clients in {elapsed:.1f}s; {answered} pings answered "
          f"(slowest {slowest * 1e3:.0f} ms); {batches} pipelined echo batches")
    assert server_complaints(caplog) == []
    assert loaded_warden.orchestrator.handles() == []
    loaded_warden.call(loaded_warden.server.wait_cleanups)  # destroy cleans up after answering
    assert os.listdir(loaded_warden.settings.depot) == []


# -- many connections on one container while it is destroyed -------------------------------

ALLOWED_AFTER_DESTROY = ("unknown handle",
                         "Container state must be one of 'active', current state is 'destroyed'")


async def hammer(path: str, handle: bytes, kind: str, started: asyncio.Event) -> list[str]:
    """Repeat one kind of request on `handle` until the server no longer knows it."""
    outcomes = []
    async with AsyncClient(path) as c:
        while True:
            try:
                if kind == "info":
                    await c.info(handle=handle)
                elif kind == "run":
                    await c.run(handle=handle, script=b"echo hi")
                else:
                    job = (await c.spawn(handle=handle, script=b"echo x")).job_id
                    _ = [f async for f in c.stream(handle=handle, job_id=job)]
                outcomes.append("ok")
            except ServerError as exc:
                outcomes.append(exc.message)
                if exc.message == "unknown handle":
                    return outcomes
            started.set()


async def destroy_under_fire(path: str) -> tuple[list[list[str]], list]:
    async with AsyncClient(path) as c:
        handle = (await c.create()).handle
        ticker = (await c.spawn(handle=handle,
                                script=b"while true; do echo tick; sleep 0.05; done")).job_id
        async with AsyncClient(path) as watcher:
            stream = watcher.stream(handle=handle, job_id=ticker)
            first = await stream.__anext__()  # the job is streaming before the destroy
            started = [asyncio.Event() for _ in range(18)]
            kinds = ["info", "run", "stream"] * 6
            tasks = [asyncio.create_task(hammer(path, handle, kind, ev))
                     for kind, ev in zip(kinds, started)]
            await asyncio.gather(*(ev.wait() for ev in started))
            await c.destroy(handle=handle)
            outcomes = await asyncio.gather(*tasks)
            rest = [f async for f in stream]  # the stream of the killed job ends, no hang
    return outcomes, [first, *rest]


def test_requests_on_one_container_while_it_is_destroyed(loaded_warden, caplog):
    caplog.set_level(logging.WARNING)
    path = loaded_warden.settings.server.unix_domain_path
    outcomes, frames = asyncio.run(asyncio.wait_for(destroy_under_fire(path), DEADLINE))
    for seen in outcomes:
        assert "ok" in seen and seen[-1] == "unknown handle"
        assert set(seen) <= {"ok", *ALLOWED_AFTER_DESTROY}, seen
    assert frames[0].data == b"tick\n" and frames[-1].HasField("exit_status")
    assert server_complaints(caplog) == []
    assert loaded_warden.orchestrator.handles() == []
    loaded_warden.call(loaded_warden.server.wait_cleanups)  # destroy cleans up after answering
    assert os.listdir(loaded_warden.settings.depot) == []
