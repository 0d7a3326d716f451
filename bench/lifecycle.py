"""Our server alone: latency of create, run `true` and destroy through the client, over N
rounds, step by step (bench.compare measures against runc and crun).

    sudo .venv/bin/python -m bench.lifecycle --rounds 50 [--no-network] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

from warden_framework.client import Client

from .report import summary_ms
from .warden import bench_server


def measure(sock: str, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"create": [], "run true": [], "destroy": []}
    with Client(sock) as c:
        for _ in range(rounds):
            t0 = time.perf_counter()
            h = c.create().handle
            t1 = time.perf_counter()
            resp = c.run(handle=h, script=b"true")
            t2 = time.perf_counter()
            c.destroy(handle=h)
            t3 = time.perf_counter()
            assert resp.exit_status == 0, resp
            times["create"].append(t1 - t0)
            times["run true"].append(t2 - t1)
            times["destroy"].append(t3 - t2)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    with bench_server(network=not args.no_network) as server:
        times = measure(server.socket, args.rounds)
    table = {name: summary_ms(v) for name, v in times.items()}
    print(f"{'step':<10} {'median ms':>10} {'p90 ms':>10}  (rounds={args.rounds}, "
          f"network={'off' if args.no_network else 'on'})")
    for name, row in table.items():
        print(f"{name:<10} {row['median_ms']:>10.1f} {row['p90_ms']:>10.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=2)


if __name__ == "__main__":
    main()
