"""Does limit_bandwidth slow a transfer? Throughput host <- container over net_in, without
and with a limit, through a real server.

    sudo .venv/bin/python -m bench.bandwidth [--megabytes 16] [--rate 2000000]
"""

from __future__ import annotations

import argparse
import socket
import time

from warden_framework.client import Client

from .warden import bench_server


def receive(host: str, port: int, expected: int) -> float:
    """Seconds to receive `expected` bytes from the container's server (retrying the connect)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            s = socket.create_connection((host, port), timeout=60)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with s:
        got, start = 0, time.perf_counter()
        while got < expected:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        return time.perf_counter() - start if got >= expected else float("nan")


def transfer(c: Client, handle: bytes, host: str, port: int, size: int) -> float:
    job = c.spawn(handle=handle, script=f"head -c {size} /dev/zero | nc -l -p 7000".encode(),
                  discard_output=True).job_id
    seconds = receive(host, port, size)
    c.link(handle=handle, job_id=job)
    return size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=16)
    parser.add_argument("--rate", type=int, default=2_000_000, help="bytes/s for the limited run")
    args = parser.parse_args()
    size = args.megabytes * 1024 * 1024
    with bench_server(network=True) as srv:
        with Client(srv.socket) as c:
            h = c.create().handle
            host = c.info(handle=h).host_ip
            port = c.net_in(handle=h, container_port=7000).host_port
            free = transfer(c, h, host, port, size)
            c.limit_bandwidth(handle=h, rate=args.rate, burst=64 * 1024)
            limited = transfer(c, h, host, port, size)
        print(f"{'run':<10} {'MB/s':>10}  ({args.megabytes} MiB from the container to the host)")
        print(f"{'no limit':<10} {free / 1e6:>10.1f}")
        print(f"{'limited':<10} {limited / 1e6:>10.2f}  (rate {args.rate / 1e6:.1f} MB/s, burst 64 KiB)")


if __name__ == "__main__":
    main()
