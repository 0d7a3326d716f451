"""Throughput and latency of a warden-server subprocess under N concurrent clients.

    sudo .venv/bin/python -m bench.load --clients 50 --seconds 20 [--no-network] [--json out.json]

Each client loops until the time is up: create, run three short jobs, spawn one and stream
it, info, destroy. A side connection pings every 20 ms. Prints requests/s and latency
percentiles (p50/p90/p99/max) per request type; --json writes the same table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from typing import Awaitable, TypeVar

from warden_framework.client import AsyncClient

from .warden import bench_server

PING_EVERY = 0.02
T = TypeVar("T")


class Recorder:
    """Latencies (seconds) and error counts per request type."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.first_error: str | None = None

    async def timed(self, name: str, awaitable: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            result = await awaitable
        except Exception as exc:
            self.errors[name] += 1
            self.first_error = self.first_error or f"{name}: {exc!r}"
            raise
        self.latencies[name].append(time.perf_counter() - start)
        return result


async def session(c: AsyncClient, rec: Recorder) -> None:
    """One round of the mix on connection `c`."""
    handle = (await rec.timed("create", c.create())).handle
    try:
        for i in range(3):
            resp = await rec.timed("run", c.run(handle=handle, script=b"echo %d" % i))
            if resp.exit_status != 0:
                raise RuntimeError(f"run exited {resp.exit_status}")
        spawned = await rec.timed("spawn", c.spawn(handle=handle, script=b"echo a; echo b >&2"))
        job = spawned.job_id
        await rec.timed("stream", _drain_stream(c, handle, job))
        await rec.timed("info", c.info(handle=handle))
    finally:
        await rec.timed("destroy", c.destroy(handle=handle))


async def _drain_stream(c: AsyncClient, handle: bytes, job: int) -> None:
    async for _ in c.stream(handle=handle, job_id=job):
        pass


async def client_loop(path: str, rec: Recorder, until: float) -> None:
    async with AsyncClient(path) as c:
        while time.monotonic() < until:
            try:
                await session(c, rec)
            except Exception:
                await c.reconnect()


async def pinger(path: str, rec: Recorder, stop: asyncio.Event) -> None:
    async with AsyncClient(path) as c:
        while not stop.is_set():
            await rec.timed("ping", c.ping())
            try:
                await asyncio.wait_for(stop.wait(), PING_EVERY)
            except asyncio.TimeoutError:
                pass


async def run_load(path: str, clients: int, seconds: float) -> tuple[Recorder, float]:
    rec = Recorder()
    stop = asyncio.Event()
    ping = asyncio.create_task(pinger(path, rec, stop))
    start = time.monotonic()
    await asyncio.gather(*(client_loop(path, rec, start + seconds) for _ in range(clients)))
    elapsed = time.monotonic() - start
    stop.set()
    await ping
    return rec, elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summarise(rec: Recorder, elapsed: float) -> dict:
    rows = {}
    for name, values in rec.latencies.items():
        rows[name] = {"count": len(values), "per_s": len(values) / elapsed,
                      "errors": rec.errors.get(name, 0),
                      **{f"p{p}_ms": percentile(values, p) * 1e3 for p in (50, 90, 99)},
                      "max_ms": max(values) * 1e3}
    total = sum(len(v) for name, v in rec.latencies.items() if name != "ping")
    return {"elapsed_s": elapsed, "requests": total, "requests_per_s": total / elapsed,
            "containers_per_s": len(rec.latencies.get("destroy", [])) / elapsed,
            "errors": sum(rec.errors.values()), "first_error": rec.first_error, "types": rows}


def print_table(summary: dict, clients: int, network: bool) -> None:
    print(f"{clients} clients, {summary['elapsed_s']:.1f} s, network={'on' if network else 'off'}: "
          f"{summary['requests']} requests ({summary['requests_per_s']:.1f}/s, pings excluded), "
          f"{summary['containers_per_s']:.2f} container lifecycles/s, {summary['errors']} errors")
    print(f"{'request':<8} {'count':>6} {'per s':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'errors':>6}")
    for name in ("create", "run", "spawn", "stream", "info", "destroy", "ping"):
        row = summary["types"].get(name)
        if row:
            print(f"{name:<8} {row['count']:>6} {row['per_s']:>7.1f} {row['p50_ms']:>8.1f} "
                  f"{row['p90_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} "
                  f"{row['errors']:>6}")
    if summary["first_error"]:
        print(f"first error: {summary['first_error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    with bench_server(network=not args.no_network) as server:
        rec, elapsed = asyncio.run(run_load(server.socket, args.clients, args.seconds))
    summary = {"clients": args.clients, "network": not args.no_network, **summarise(rec, elapsed)}
    print_table(summary, args.clients, not args.no_network)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
