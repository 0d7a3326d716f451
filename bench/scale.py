"""(4) Many live containers at once, created and destroyed by concurrent clients: create
latency by tenth of the live count, `run true` with all of them live, the server's and wshd's
memory; (6) ping latency measured by a separate process meanwhile, so that the benchmark's own
work never delays a ping."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from pathlib import Path

from warden_framework.client import AsyncClient, Client

from .report import summary_ms

PING_INTERVAL = 0.005
IDLE_PINGS = 400
TENTHS = 10
# `run true` in this many of the live containers, spread over them, once all are created.
RUNS_ALIVE = 50
CLEANUP_TIMEOUT = 300.0


def ping_loop(socket: str, stop, results) -> None:
    """In a process of its own: ping until `stop` is set; send back (start time, seconds)."""
    samples = []
    with Client(socket) as client:
        while not stop.is_set():
            t0 = time.monotonic()
            client.ping()
            samples.append((t0, time.monotonic() - t0))
            stop.wait(PING_INTERVAL)
    results.send(samples)


def idle_pings(socket: str) -> list[float]:
    with Client(socket) as client:
        samples = []
        for _ in range(IDLE_PINGS):
            t0 = time.perf_counter()
            client.ping()
            samples.append(time.perf_counter() - t0)
    return samples


async def _workers(socket: str, jobs: list, clients: int, work) -> tuple[list[float], list[str]]:
    """Run work(client, item) for every item over `clients` connections; the latencies of
    those that succeeded, in the order they ended, and the errors."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in jobs:
        queue.put_nowait(item)
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        async with AsyncClient(socket) as client:
            while not queue.empty():
                item = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    await work(client, item)
                except Exception as exc:  # counted and reported, the others go on
                    errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors


def create_all(socket: str, count: int, clients: int) -> tuple[list[str], list[float], list[str]]:
    """The handles made, each create's latency in the order they ended (the live count then),
    and the errors."""
    handles: list[str] = []

    async def create(client: AsyncClient, _: int) -> None:
        handles.append((await client.create()).handle)

    latencies, errors = asyncio.run(_workers(socket, list(range(count)), clients, create))
    return handles, latencies, errors


def by_tenth(latencies: list[float]) -> list[dict]:
    """Summaries of consecutive tenths of `latencies` (the first tenth: the first to end)."""
    size = len(latencies) / TENTHS
    return [summary_ms(latencies[round(i * size):round((i + 1) * size)]) for i in range(TENTHS)]


def runs_alive(socket: str, handles: list[str]) -> tuple[list[float], list[str]]:
    """`run true` in RUNS_ALIVE containers spread over `handles`, one after the other."""
    step = max(1, len(handles) // RUNS_ALIVE)
    latencies, errors = [], []
    with Client(socket) as client:
        for handle in handles[::step][:RUNS_ALIVE]:
            t0 = time.perf_counter()
            try:
                reply = client.run(handle=handle, script=b"true")
            except Exception as exc:  # counted and reported, the others go on
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if reply.exit_status != 0:
                errors.append(f"run true in {handle}: exit {reply.exit_status}")
                continue
            latencies.append(time.perf_counter() - t0)
    return latencies, errors


def destroy_all(socket: str, handles: list[str], clients: int) -> list[str]:
    async def destroy(client: AsyncClient, handle: str) -> None:
        await client.destroy(handle=handle)

    return asyncio.run(_workers(socket, handles, clients, destroy))[1]


def wait_cleaned(socket: str, depot: Path) -> bool:
    """Wait until the server's cleanup after the destroys' answers has left in `depot` only
    the containers it still lists (those whose destroy failed); False if it has not after
    CLEANUP_TIMEOUT."""
    with Client(socket) as client:
        keep = len(client.list().handles)
    deadline = time.monotonic() + CLEANUP_TIMEOUT
    while len(os.listdir(depot)) > keep:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def wshd_memory(depot: Path) -> dict:
    """Count, summed RSS and PSS of the wshd processes serving containers in `depot`."""
    marker = os.fsencode(depot)
    rss = pss = count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if os.path.basename(args[0]) != b"wshd" or not any(marker in a for a in args):
                continue
            rss += _status_kb(int(entry), "VmRSS")
            pss += _pss_kb(int(entry))
            count += 1
        except OSError:
            continue  # gone meanwhile
    each = max(count, 1)
    return {"count": count, "rss_kb_sum": rss, "pss_kb_sum": pss,
            "rss_kb_each": rss / each, "pss_kb_each": pss / each}


def run(socket: str, server_pid: int, depot: Path, count: int, clients: int) -> dict:
    """Create `count` containers with `clients` connections, measure, destroy them all."""
    idle = idle_pings(socket)
    rss_idle = _status_kb(server_pid, "VmRSS")
    Path(f"/proc/{server_pid}/clear_refs").write_text("5")  # peak RSS from here on
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    pinger = ctx.Process(target=ping_loop, args=(socket, stop, send), daemon=True)
    pinger.start()
    handles: list[str] = []
    alive, errors, create_latency, wshd, rss_all = 0, ["not run"], [], wshd_memory(depot), 0
    run_latency: list[float] = []
    run_errors: list[str] = []
    t0 = t1 = t2 = time.monotonic()
    try:
        t0 = time.monotonic()
        handles, create_latency, errors = create_all(socket, count, clients)
        t1 = time.monotonic()
        rss_all = _status_kb(server_pid, "VmRSS")
        wshd = wshd_memory(depot)
        with Client(socket) as client:
            alive = len(client.list().handles)
        run_latency, run_errors = runs_alive(socket, handles)
        t2 = time.monotonic()
    finally:
        destroy_errors = destroy_all(socket, handles, clients)
        t3 = time.monotonic()
        cleaned = wait_cleaned(socket, depot)
        t4 = time.monotonic()
        stop.set()
        samples = receive.recv() if receive.poll(30) else []
        pinger.join(30)
    peak = _status_kb(server_pid, "VmHWM")

    def phase(start: float, end: float) -> dict:
        return summary_ms([s for t, s in samples if start <= t < end])

    return {
        "containers": count, "clients": clients, "alive": alive,
        "errors": len(errors), "error_texts": sorted(set(errors))[:10],
        "destroy_errors": len(destroy_errors),
        "destroy_error_texts": sorted(set(destroy_errors))[:10],
        "create_s": t1 - t0, "destroy_s": t3 - t2,
        "destroy_cleanup_s": t4 - t2 if cleaned else None,
        "create_latency": summary_ms(create_latency),
        "create_by_tenth": by_tenth(create_latency),
        "run_alive": summary_ms(run_latency), "run_errors": len(run_errors),
        "run_error_texts": sorted(set(run_errors))[:10],
        "server_rss_mb": {"idle": rss_idle / 1024, "with_all": rss_all / 1024,
                          "peak": peak / 1024},
        "wshd": wshd,
        "ping": {"idle": summary_ms(idle), "create": phase(t0, t1), "alive": phase(t1, t2),
                 "destroy": phase(t2, t4), "throughout": phase(t0, t4)},
    }
