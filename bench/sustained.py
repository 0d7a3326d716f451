"""(7) Sustained throughput: N clients, each on a thread of its own, loop create -> run `true`
-> destroy on one system for a fixed window. Reports lifecycles completed per second, and the
work the system has not finished: every second, the containers it still holds objects of
beyond those in flight. A system that answers early and leaves its cleanup for later shows
that here as a backlog, and as a backlog that grows if the cleanup cannot keep up."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable

from .report import summary_ms

SAMPLE_EVERY = 1.0
DRAIN_TIMEOUT = 120.0
DRAIN_POLL = 0.005
# A client whose lifecycles fail this many times in a row stops (a dead connection would
# otherwise fill the window with instant failures).
GIVE_UP_AFTER = 5


class Window:
    """What the clients of one window record: containers in flight, lifecycle end times and
    durations, errors. Shared by the client threads and the sampler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.ends: list[float] = []
        self.durations: list[float] = []
        self.errors: list[str] = []

    def client(self, lifecycle: Callable[[], None], deadline: float) -> None:
        failures = 0
        while time.monotonic() < deadline and failures < GIVE_UP_AFTER:
            with self._lock:
                self.in_flight += 1
            t0 = time.monotonic()
            try:
                lifecycle()
            except Exception as exc:  # counted and reported; the other clients go on
                failures += 1
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                failures = 0
                end = time.monotonic()
                with self._lock:
                    self.ends.append(end)
                    self.durations.append(end - t0)
            finally:
                with self._lock:
                    self.in_flight -= 1


def run_window(system, clients: int, seconds: float) -> dict:
    """One window of `seconds` with `clients` on `system` (which offers `clients(n)` and
    `pending()`), started once the system holds nothing, followed by its drain."""
    before = wait_drained(system)
    window = Window()
    samples: list[dict] = []
    with system.clients(clients) as lifecycles:
        start = time.monotonic()
        deadline = start + seconds
        threads = [threading.Thread(target=window.client, args=(lifecycle, deadline),
                                    name=f"bench-client-{i}")
                   for i, lifecycle in enumerate(lifecycles)]
        cpu0 = busy_cpu_seconds()
        for thread in threads:
            thread.start()
        cpu1 = sample_until(system, window, start, deadline, samples)
        for thread in threads:
            thread.join()
        last_answer = time.monotonic()
    drain_s = None if wait_drained(system) is None else time.monotonic() - last_answer
    cpu2 = busy_cpu_seconds()
    completed = sum(end <= deadline for end in window.ends)
    return {
        "clients": clients, "seconds": seconds, "completed": completed,
        "per_s": completed / seconds, "errors": len(window.errors),
        "error_texts": sorted(set(window.errors))[:10],
        "lifecycle": summary_ms(window.durations),
        "cpu_ms_per_lifecycle": (cpu1 - cpu0) * 1e3 / completed if completed else None,
        "cpu_ms_per_lifecycle_drained": ((cpu2 - cpu0) * 1e3 / len(window.ends)
                                         if window.ends else None),
        "samples": samples, "backlog": backlog_trend(samples), "pending_at_end": samples[-1],
        "drain_s": drain_s,
        "drained_before": before is not None,
    }


def sample_until(system, window: Window, start: float, deadline: float,
                 samples: list[dict]) -> float:
    """Every SAMPLE_EVERY seconds from `start`, and at `deadline`, what `system` holds and
    how many containers are in flight; return the host's busy CPU seconds at `deadline`."""
    ticks = [start + k * SAMPLE_EVERY for k in range(int((deadline - start) / SAMPLE_EVERY) + 1)]
    if deadline - ticks[-1] > 1e-6:
        ticks.append(deadline)
    cpu = 0.0
    for at in ticks:
        time.sleep(max(0.0, at - time.monotonic()))
        if at == ticks[-1]:
            cpu = busy_cpu_seconds()
        held = system.pending()
        in_flight = window.in_flight
        samples.append({"t": round(time.monotonic() - start, 3), "in_flight": in_flight,
                        **held, "backlog": max(0, max(held.values()) - in_flight)})
    return cpu


def backlog_trend(samples: list[dict]) -> dict:
    """The backlog over the window (the sample at 0 s, taken before any work, left out):
    first and last third's means, maximum, last value, least-squares slope, and whether it
    grew: the last third's mean more than one container above every sample of the first
    third, which a backlog that merely fluctuates around a level does not reach but one that
    accumulates soon does."""
    points = [(s["t"], s["backlog"]) for s in samples if s["t"] > 0]
    if len(points) < 3:
        return {"grew": None}
    third = len(points) // 3
    first = statistics.fmean(b for _, b in points[:third])
    last = statistics.fmean(b for _, b in points[-third:])
    slope = statistics.linear_regression([t for t, _ in points], [b for _, b in points]).slope
    return {"first_third": round(first, 2), "last_third": round(last, 2),
            "max": max(b for _, b in points), "end": points[-1][1],
            "slope_per_min": round(slope * 60, 2),
            "grew": last > max(b for _, b in points[:third]) + 1}


def wait_drained(system) -> float | None:
    """Seconds until `system` holds no container's objects; None if it still does after
    DRAIN_TIMEOUT."""
    t0 = time.monotonic()
    while any(system.pending().values()):
        if time.monotonic() - t0 > DRAIN_TIMEOUT:
            return None
        time.sleep(DRAIN_POLL)
    return time.monotonic() - t0


def busy_cpu_seconds() -> float:
    """CPU time the whole host spent not idle since boot (/proc/stat), all processes."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run(systems: list, clients: list[int], seconds: float) -> dict:
    """A window per client count and system, one after the other."""
    runs: dict[str, dict[str, dict]] = {}
    for count in clients:
        runs[str(count)] = {}
        for system in systems:
            print(f"bench: sustained, {system.name}, {count} clients, {seconds:g} s", flush=True)
            runs[str(count)][system.name] = run_window(system, count, seconds)
    return {"seconds": seconds, "clients": clients, "systems": [s.name for s in systems],
            "runs": runs}
