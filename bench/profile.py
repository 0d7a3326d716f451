"""Where the server's time goes: py-spy samples the server (every thread, idle included, so
time blocked in the kernel counts) while a workload runs, then the samples below each
request's orchestrator call are printed as a tree in milliseconds per operation.

    sudo .venv/bin/python -m bench.profile --workload lifecycle --rounds 100
    sudo .venv/bin/python -m bench.profile --workload run --rounds 300 --raw run.txt

py-spy is a tool for this script only, not a dependency: `.venv/bin/pip install py-spy`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from warden_framework.client import Client

from . import stream
from .warden import bench_server

RATE = 1000
# Frames where a request's work starts: everything the server does for a client is below one.
ROOTS = ("Orchestrator.", "WardenServer.destroy", "Dispatcher.on_", "Reaper._run",
         "WardenServer._supervise_job", "WardenServer._answer")
_LINE = re.compile(r" \(([^():]*):\d+\)$")


def workload(name: str, client: Client, target: str) -> None:
    if name == "stream":
        job_id = client.spawn(handle=target, script=stream.SCRIPT.encode()).job_id
        for _ in client.stream(handle=target, job_id=job_id):
            pass
    elif name == "lifecycle":
        handle = client.create().handle
        client.run(handle=handle, script=b"true")
        client.destroy(handle=handle)
    elif name == "create_destroy":
        client.destroy(handle=client.create().handle)
    else:
        client.run(handle=target, script=b"true")


def record(name: str, rounds: int, raw: Path) -> float:
    """Run `rounds` of the workload under py-spy; return the seconds per round."""
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with bench_server() as server, Client(server.socket) as client:
        target = client.create().handle
        for _ in range(5):
            workload(name, client, target)
        spy = subprocess.Popen([spy_bin, "record", "-p", str(server.proc.pid), "--rate",
                                str(RATE), "--idle", "--threads", "--format", "raw", "-o",
                                str(raw), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1)  # py-spy attaches asynchronously; a benchmark, not a test
        t0 = time.perf_counter()
        for _ in range(rounds):
            workload(name, client, target)
        elapsed = (time.perf_counter() - t0) / rounds
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
        if spy.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
    return elapsed


def _frames(stack: str) -> list[str]:
    """`thread (tid): name;frame (file:line);...` -> frames as `function (file)` from a root."""
    frames = [_LINE.sub(r" (\1)", f) for f in stack.split(";")[1:]]
    for i, frame in enumerate(frames):
        if frame.startswith(ROOTS):
            return frames[i:]
    return []


def tree(raw: Path) -> dict:
    """A trie of sample counts: {frame: [count, children]}."""
    root: dict = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = _frames(stack)
        node = root
        for frame in frames:
            entry = node.setdefault(frame, [0, {}])
            entry[0] += int(count)
            node = entry[1]
    return root


def print_tree(node: dict, rounds: int, depth: int, max_depth: int, floor_ms: float) -> None:
    for frame, (count, children) in sorted(node.items(), key=lambda kv: -kv[1][0]):
        ms = count / RATE * 1e3 / rounds
        if ms < floor_ms:
            continue
        print(f"{ms:8.2f} ms  {'  ' * depth}{frame}")
        if depth < max_depth:
            print_tree(children, rounds, depth + 1, max_depth, floor_ms)


def self_time(raw: Path, rounds: int, top: int) -> list[tuple[float, str]]:
    """The leaf frames under a root, by time: where the threads actually were."""
    leaves: dict[str, int] = defaultdict(int)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = _frames(stack)
        if frames:
            leaves[frames[-1]] += int(count)
    ranked = sorted(leaves.items(), key=lambda kv: -kv[1])[:top]
    return [(count / RATE * 1e3 / rounds, frame) for frame, count in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("lifecycle", "create_destroy", "run", "stream"),
                        default="lifecycle")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--depth", type=int, default=7, help="tree depth printed")
    parser.add_argument("--floor", type=float, default=0.3, help="hide frames below (ms/op)")
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or Path(tmp) / "raw.txt"
        per_round = record(args.workload, args.rounds, raw)
        print(f"{args.workload}: {per_round * 1e3:.1f} ms per round from the client, "
              f"{args.rounds} rounds; server time below, ms per round (threads overlap)")
        print_tree(tree(raw), args.rounds, 0, args.depth, args.floor)
        print("\nleaf frames (where the time is spent):")
        for ms, frame in self_time(raw, args.rounds, 25):
            print(f"{ms:8.2f} ms  {frame}")


if __name__ == "__main__":
    main()
