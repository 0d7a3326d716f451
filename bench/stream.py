"""(5) Throughput of a job's stdout: 1 GiB from /dev/zero in a live container, read to the
end by the client (ours: spawn + stream through the protocol; a peer: `exec` into a pipe).
The clock runs from the request to the last byte and exit status."""

from __future__ import annotations

import statistics
import time

from warden_framework.client import Client

from .systems import Peer

SIZE = 1 << 30
CHUNK = 1 << 20
# dd, not busybox head: head copies in 4 KiB writes and tops out near 300 MB/s by itself.
SCRIPT = f"dd if=/dev/zero bs={CHUNK} count={SIZE // CHUNK} 2>/dev/null"


def ours_once(socket: str, handle: str) -> float:
    with Client(socket) as client:
        t0 = time.perf_counter()
        job_id = client.spawn(handle=handle, script=SCRIPT.encode()).job_id
        received = 0
        status = None
        for response in client.stream(handle=handle, job_id=job_id):
            if response.name == "stdout":
                received += len(response.data)
            if response.HasField("exit_status"):
                status = response.exit_status
        elapsed = time.perf_counter() - t0
    if status != 0 or received != SIZE:
        raise RuntimeError(f"warden stream: exit {status}, {received} of {SIZE} bytes")
    return elapsed


def peer_once(peer: Peer) -> float:
    assert peer.target is not None
    t0 = time.perf_counter()
    received = peer.runtime.exec_stream(peer.target.name, ["sh", "-c", SCRIPT], CHUNK)
    elapsed = time.perf_counter() - t0
    if received != SIZE:
        raise RuntimeError(f"{peer.name} stream: {received} of {SIZE} bytes")
    return elapsed


def summary(seconds: list[float]) -> dict:
    median = statistics.median(seconds)
    return {"seconds": seconds, "median_s": median, "median_mb_s": SIZE / median / 1e6,
            "best_mb_s": SIZE / min(seconds) / 1e6}
