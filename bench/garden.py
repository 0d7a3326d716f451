"""(8) Garden's own release gate, through our Garden front end (plugins/garden_api): the mean
create with five concurrent clients and 1 MiB disk quotas (gate: under 1.5 s), and 50 MB of
stdout through Run, from the request to the exit status with stdout and stderr drained, what
the Go client's Wait() waits for (gate: under 3 s).

Our server runs with both front ends, the btrfs disk driver (a loop-backed image of its own)
and the iptables network driver, on the kit's real-server config. The HTTP is raw, as Garden's
Go client sends it (one connection per call; Run's control, stdout and stderr sockets).

    .venv/bin/python -m bench.garden [--creates-per-client 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from warden_framework.testing.process import ServerProcess
from warden_framework.testing.real_server import missing, server_config

CLIENTS = 5
STREAM_BYTES = 50 * 1000 * 1000
CREATE_GATE = 1.5
STREAM_GATE = 3.0
CREATE_BODY = {"image": {}, "limits": {"disk_limits": {"byte_hard": 1 << 20}, "bandwidth_limits": {},
                                       "cpu_limits": {}, "memory_limits": {}, "pid_limits": {}}}


class Garden:
    """Garden's Go client on the wire, as little of it as the gate needs."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _send(self, method: str, target: str, body: dict | None, close: bool) -> socket.socket:
        payload = b"" if body is None else json.dumps(body).encode() + b"\n"
        head = [f"{method} {target} HTTP/1.1", "Host: api", f"Content-Length: {len(payload)}"]
        if close:
            head.append("Connection: close")
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(self.path)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        return sock

    @staticmethod
    def _head(sock: socket.socket) -> tuple[int, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the response header")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), rest

    def call(self, method: str, target: str, body: dict | None = None) -> dict:
        with self._send(method, target, body, close=True) as sock:
            status, data = self._head(sock)
            while chunk := sock.recv(65536):
                data += chunk
        if status != 200:
            raise RuntimeError(f"{method} {target}: {status} {data!r}")
        return json.loads(data)

    def hijack(self, target: str, body: dict | None = None) -> tuple[socket.socket, bytes]:
        sock = self._send("POST" if body is not None else "GET", target, body, close=False)
        status, rest = self._head(sock)
        if status not in (200, 201):
            raise RuntimeError(f"{target}: {status} {rest!r}")
        return sock, rest


def creates(garden: Garden, per_client: int) -> tuple[list[float], list[str]]:
    """Each of CLIENTS threads creates `per_client` containers one after the other."""
    times: list[float] = []
    handles: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            handle = garden.call("POST", "/containers", CREATE_BODY)["Handle"]
            with lock:
                times.append(time.perf_counter() - t0)
                handles.append(handle)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, handles


def stream_50mb(garden: Garden, handle: str) -> float:
    t0 = time.perf_counter()
    control, buffered = garden.hijack(f"/containers/{handle}/processes", {
        "path": "head", "args": ["-c", str(STREAM_BYTES), "/dev/zero"], "rlimits": {},
        "image": {}})
    while b"\n" not in buffered:
        buffered += control.recv(65536)
    first = json.loads(buffered.partition(b"\n")[0])
    base = f"/containers/{handle}/processes/{first['process_id']}/attaches/{first['stream_id']}"
    out, received = garden.hijack(base + "/stdout")
    err, _ = garden.hijack(base + "/stderr")
    count = len(received)
    while chunk := out.recv(1 << 20):
        count += len(chunk)
    while err.recv(65536):
        pass
    rest = buffered.partition(b"\n")[2]
    while b"exit_status" not in rest and (chunk := control.recv(65536)):
        rest += chunk
    elapsed = time.perf_counter() - t0
    for sock in (control, out, err):
        sock.close()
    if count != STREAM_BYTES:
        raise RuntimeError(f"stdout: {count} bytes, expected {STREAM_BYTES}")
    return elapsed


def run(per_client: int = 10, stream_rounds: int = 5) -> dict:
    """Start a server with the Garden front end, measure, clean everything up."""
    reason = missing()
    if reason:
        return {"skipped": reason}
    workdir = Path(tempfile.mkdtemp(prefix="warden-bench-garden-"))
    sock = workdir / "garden.sock"
    config = server_config(workdir, prefix="wb", drivers={"network": "iptables", "disk": "btrfs"},
                           quota={"disk_quota_enabled": True},
                           user={"pool_size": 64}, network={"pool_network": "10.243.0.0/24"},
                           frontends={"warden": {}, "garden": {"listen_address": str(sock)}})
    server = ServerProcess(config, workdir).start()
    try:
        garden = Garden(str(sock))
        times, handles = creates(garden, per_client)
        streams = [stream_50mb(garden, handles[0]) for _ in range(stream_rounds)]
        for handle in handles:
            garden.call("DELETE", f"/containers/{handle}")
    finally:
        try:
            server.stop_and_clean()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # the depot and the btrfs image
    return {"creates": times, "streams": streams}


def summary(result: dict) -> list[str]:
    if "skipped" in result:
        return [f"(8) Garden's gate: skipped: {result['skipped']}"]
    mean = statistics.mean(result["creates"])
    stream = statistics.median(result["streams"])
    return [
        f"(8) Garden create, {CLIENTS} clients, 1 MiB disk quotas: mean {mean:.3f} s over "
        f"{len(result['creates'])} creates (p90 {sorted(result['creates'])[int(0.9 * len(result['creates']))]:.3f} s); "
        f"gate {CREATE_GATE} s: {'met' if mean < CREATE_GATE else 'MISSED'} ({mean / CREATE_GATE:.2f}x the gate)",
        f"(8) Garden Run, 50 MB of stdout: median {stream:.3f} s over {len(result['streams'])} runs; "
        f"gate {STREAM_GATE} s: {'met' if stream < STREAM_GATE else 'MISSED'} ({stream / STREAM_GATE:.2f}x the gate)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.garden", description=__doc__)
    parser.add_argument("--creates-per-client", type=int, default=10)
    parser.add_argument("--stream-rounds", type=int, default=5)
    args = parser.parse_args()
    for line in summary(run(args.creates_per_client, args.stream_rounds)):
        print(line)


if __name__ == "__main__":
    main()
