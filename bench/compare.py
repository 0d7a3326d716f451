"""Our server side by side with runc and crun, in one run (issues 7 and 14):

    sudo .venv/bin/python -m bench.compare --rounds 50 --json out.json

(1) create + run `true` + destroy with networking and limits, answered and answered + cleanup
finished, (2) `true` in a live container, (3) create + destroy, alternating the systems (the
order rotates every round) after a few untimed warm-up rounds; (5) stream of a 1 GiB job
output; (7) sustained lifecycles per second with 4 and 8 clients looping for a fixed window,
with the cleanup backlog sampled every second; (4) 250 and 1,000 live containers created by 8
concurrent clients (pool of 1,024), with memory, and (6) ping latency meanwhile; (8) Garden's
release gate through our Garden front end (bench/garden.py); (9) a restart with 1,000 live
containers: drain, then start until every container is listed again. Prints a table
and the targets, writes JSON, and leaves nothing behind: containers, veths, mounts, cgroups,
chains, bundles, hugetlb mount.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from . import garden, report, restart, runtimes, scale, stream, sustained
from .sandbox import Sandboxes
from .systems import Ours, Peer
from .warden import ROOTFS, WSHD, bench_server, pool_network

MEASURES = ("lifecycle", "exec", "create_destroy")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50, help="timed rounds per system (50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (3)")
    parser.add_argument("--containers", type=int, nargs="+", default=[250, 1000],
                        help="for (4): one run per count (250 1000)")
    parser.add_argument("--clients", type=int, default=8, help="for (4) (8)")
    parser.add_argument("--pool", type=int, default=1024,
                        help="containers our server's network pool holds, a power of two (1024)")
    parser.add_argument("--stream-rounds", type=int, default=3, help="for (5) (3)")
    parser.add_argument("--sustain-seconds", type=float, default=30.0,
                        help="for (7): the window per system and client count (30)")
    parser.add_argument("--sustain-clients", type=int, nargs="+", default=[4, 8],
                        help="for (7): one window per count (4 8)")
    parser.add_argument("--restart-containers", type=int, default=1000,
                        help="for (9): live containers while the server restarts (1000)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=("peers", "stream", "scale", "sustained", "restart", "garden"),
                        help="leave a part out")
    parser.add_argument("--json", type=Path, help="write every result and sample here")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="also measure the server of another checkout, bootstrapped (its "
                             ".venv, rootfs and wshd), e.g. a `git worktree` of an older commit, "
                             "as system 'baseline' in the same rounds")
    args = parser.parse_args(argv)
    try:
        pool_network(args.pool)
    except ValueError as exc:
        parser.error(str(exc))
    if "scale" not in args.skip and max(args.containers) > args.pool:
        parser.error(f"--containers {max(args.containers)} does not fit a pool of {args.pool}: "
                     f"raise --pool")
    if "restart" not in args.skip and args.restart_containers > args.pool:
        parser.error(f"--restart-containers {args.restart_containers} does not fit a pool of "
                     f"{args.pool}: raise --pool")
    return args


def alternate(systems: list, rounds: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """Every measure on every system, round by round; the systems' order rotates.

    After each operation the system settles: a peer's netns (and with it the veth pair) dies
    in the kernel after the script let go of it, our server cleans up after a destroy's
    answer, and that work must not slow the next system's operation. How long it took is kept
    under "deferred", and for (1) also added to the answer's time: "lifecycle_cleanup".
    """
    samples: dict[str, dict[str, list[float]]] = {
        m: {s.name: [] for s in systems}
        for m in ("lifecycle", "lifecycle_cleanup", "exec", "create_destroy", "deferred")}
    for i in range(warmup + rounds):
        order = systems[i % len(systems):] + systems[:i % len(systems)]
        for measure in MEASURES:
            for system in order:
                elapsed = timed(getattr(system, measure))
                deferred = timed(system.settle)
                if i >= warmup:
                    samples[measure][system.name].append(elapsed)
                    if measure == "lifecycle":
                        samples["lifecycle_cleanup"][system.name].append(elapsed + deferred)
                    if measure != "exec":
                        samples["deferred"][system.name].append(deferred)
        if i >= warmup and (i - warmup + 1) % 10 == 0:
            print(f"bench: {i - warmup + 1}/{rounds} rounds", flush=True)
    return samples


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure_streams(ours: Ours, socket: str, peers: list[Peer], rounds: int) -> dict:
    seconds: dict[str, list[float]] = {ours.name: [], **{p.name: [] for p in peers}}
    for _ in range(rounds):
        assert ours.target is not None
        seconds[ours.name].append(stream.ours_once(socket, ours.target))
        for peer in peers:
            seconds[peer.name].append(stream.peer_once(peer))
    result: dict = {"bytes": stream.SIZE, "rounds": rounds, "systems": list(seconds)}
    for name, values in seconds.items():
        result[name] = stream.summary(values)
    return result


def host_facts() -> dict:
    facts = {"kernel": platform.release(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
             "command": " ".join([Path(sys.executable).name, "-m", "bench.compare", *sys.argv[1:]])}
    for name in runtimes.NAMES:
        if shutil.which(name):
            facts[name] = runtimes.version(name)
    return facts


def check_host() -> None:
    if os.geteuid() != 0:
        sys.exit("bench: needs root (containers are made in the real kernel)")
    if not (ROOTFS / "bin" / "busybox").exists() or not os.access(WSHD, os.X_OK):
        sys.exit("bench: no rootfs or wshd yet: run scripts/bootstrap.sh (./dev bench does)")


def start_peers(stack: ExitStack, workdir: Path, leftovers: list[str]) -> list[Peer]:
    """runc and crun with the script's sandboxes, and crun's hugetlb hierarchy; `stack`
    removes all of it, noting in `leftovers` whatever was still there."""
    stack.enter_context(runtimes.hugetlb_v1())
    sandboxes = Sandboxes(workdir / "bundles", "b" + secrets.token_hex(2), ROOTFS)
    stack.callback(lambda: leftovers.extend(sandboxes.close()))
    config = runtimes.base_config()
    peers = []
    for name in runtimes.NAMES:
        runtime = runtimes.Runtime(name, workdir / "state" / name)
        stack.callback(lambda r=runtime: leftovers.extend(r.close()))
        peer = Peer(runtime, sandboxes, config)
        stack.callback(peer.close)
        peers.append(peer)
    return peers


def measure_alternating(args: argparse.Namespace, ours: Ours, peers: list,
                        results: dict) -> None:
    """(1), (2), (3) and (5), each system with its live container started first."""
    systems = [ours, *peers]
    for system in systems:
        system.start_target()
    print(f"bench: {args.rounds} rounds of {', '.join(MEASURES)} on "
          f"{', '.join(s.name for s in systems)}", flush=True)
    samples = alternate(systems, args.rounds, args.warmup)
    deferred = samples.pop("deferred")
    results["latency"] = {m: {name: report.summary_ms(v) for name, v in by.items()}
                          for m, by in samples.items()}
    results["deferred"] = {name: report.summary_ms(v) for name, v in deferred.items()}
    if "stream" not in args.skip:
        print("bench: stream", flush=True)
        runtimes_only = [p for p in peers if isinstance(p, Peer)]
        results["stream"] = measure_streams(ours, ours.socket, runtimes_only, args.stream_rounds)
    for system in systems:
        system.stop_target()


def run(args: argparse.Namespace) -> dict:
    if "peers" not in args.skip:
        runtimes.ensure_installed()
    results: dict = {"host": host_facts(), "rounds": args.rounds, "warmup": args.warmup,
                     "pool": args.pool}
    workdir = Path(tempfile.mkdtemp(prefix="warden-bench-peers-"))
    leftovers: list[str] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        server = stack.enter_context(bench_server(pool=args.pool))
        ours = Ours(server.socket, server.settings.depot,
                    prefix=server.settings.server.name_prefix)
        stack.callback(ours.close)
        with ExitStack() as peer_stack:
            peers = [] if "peers" in args.skip else start_peers(peer_stack, workdir, leftovers)
            if args.baseline:
                base = peer_stack.enter_context(bench_server(checkout=args.baseline.resolve(),
                                                             pool=args.pool))
                baseline = Ours(base.socket, base.settings.depot, name="baseline",
                                prefix=base.settings.server.name_prefix)
                peer_stack.callback(baseline.close)
                peers = [baseline, *peers]
            measure_alternating(args, ours, peers, results)
            if "sustained" not in args.skip:
                results["sustained"] = sustained.run([ours, *peers], args.sustain_clients,
                                                     args.sustain_seconds)
        if "scale" not in args.skip:
            results["scale"] = []
            for count in args.containers:
                print(f"bench: {count} containers, {args.clients} clients, pool {args.pool}",
                      flush=True)
                results["scale"].append(scale.run(server.socket, server.proc.pid,
                                                  server.settings.depot, count, args.clients))
        if "restart" not in args.skip:
            print(f"bench: restart with {args.restart_containers} live containers", flush=True)
            results["restart"] = restart.run(server, args.restart_containers, args.clients)
    if "garden" not in args.skip:
        print("bench: Garden's release gate through the Garden front end", flush=True)
        results["garden"] = garden.run()
    results["leftovers"] = leftovers
    results["targets"] = report.targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    check_host()
    results = run(args)
    peers = [n for n in runtimes.NAMES if "peers" not in args.skip]
    report.print_report(results, ["baseline", *peers] if args.baseline else peers)
    if "garden" in results:
        print("\n".join(garden.summary(results["garden"])))
    if results["leftovers"]:
        print(f"bench: left behind: {results['leftovers']}")
    if args.json:
        report.write_json(results, args.json)
        print(f"bench: wrote {args.json}")


if __name__ == "__main__":
    main()
