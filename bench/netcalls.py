"""Cost of the network requests through a real server: net_in and net_out calls, and
create+destroy with networking, medians and p90 over N rounds.

    sudo .venv/bin/python -m bench.netcalls --rounds 50
"""

from __future__ import annotations

import argparse
import statistics
import time

from warden_framework.client import Client

from .warden import bench_server


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"create+destroy": [], "net_in": [], "net_out": []}
    with bench_server(network=True) as srv, Client(srv.socket) as c:
        for _ in range(args.rounds):
            start = time.perf_counter()
            c.destroy(handle=c.create().handle)
            samples["create+destroy"].append((time.perf_counter() - start) * 1e3)
        h = c.create().handle
        for i in range(args.rounds):
            samples["net_in"].append(timed(c.net_in, handle=h, container_port=8000 + i))
            samples["net_out"].append(timed(c.net_out, handle=h, network=f"10.1.{i}.0/24", port=443))
        c.destroy(handle=h)
    print(f"{'request':<16} {'median ms':>10} {'p90 ms':>10}  (rounds={args.rounds}, network on)")
    for name, values in samples.items():
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"{name:<16} {statistics.median(values):>10.2f} {p90:>10.2f}")


if __name__ == "__main__":
    main()
