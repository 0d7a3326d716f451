"""Summaries of samples (median, p90, p99), ratios between systems, the issue's targets, and
how they are printed as a table and written as JSON. No measuring here."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

OURS = "warden"
LABELS = {
    "lifecycle": "(1) create + run true + destroy, network and limits",
    "exec": "(2) run true in a live container",
    "create_destroy": "(3) create + destroy",
}


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict:
    """median, p90, p99, min, max in milliseconds, the sample size, and every sample."""
    ms = [s * 1e3 for s in seconds]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "median_ms": statistics.median(ms), "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99), "min_ms": min(ms), "max_ms": max(ms),
            "samples_ms": [round(v, 3) for v in ms]}


def ratios(by_system: dict[str, dict], key: str = "median_ms") -> dict[str, dict[str, float]]:
    """For each system, its `key` divided by each other system's."""
    return {name: {other: row[key] / peer[key] for other, peer in by_system.items()
                   if other != name and peer.get(key)}
            for name, row in by_system.items() if row.get(key) is not None}


def latency_table(latency: dict[str, dict[str, dict]], peers: Sequence[str]) -> list[str]:
    head = f"{'measurement':<52} {'system':<7} {'median ms':>10} {'p90 ms':>9}"
    head += "".join(f" {'x ' + p:>8}" for p in peers)
    lines = [head, "-" * len(head)]
    for measure, by_system in latency.items():
        rel = ratios(by_system)
        for i, (system, row) in enumerate(by_system.items()):
            label = LABELS.get(measure, measure) if i == 0 else ""
            line = f"{label:<52} {system:<7} {row['median_ms']:>10.2f} {row['p90_ms']:>9.2f}"
            line += "".join(f" {_ratio(rel.get(system, {}).get(p)):>8}" for p in peers)
            lines.append(line)
    lines.append(f"(x peer = median / that peer's median; {OURS} is our server)")
    return lines


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def targets(results: dict) -> list[dict]:
    """The issue's targets, each with the measured value, the limit and whether it is met."""
    found: list[dict] = []
    latency = results.get("latency", {})

    def versus_crun(measure: str, name: str) -> None:
        rows = latency.get(measure, {})
        if OURS in rows and "crun" in rows:
            ratio = rows[OURS]["median_ms"] / rows["crun"]["median_ms"]
            found.append({"target": name, "value": round(ratio, 3), "limit": 0.5,
                          "unit": "x crun median", "met": ratio <= 0.5})

    versus_crun("lifecycle", "lifecycle with networking <= 0.5x crun")
    versus_crun("exec", "run true in a live container <= 0.5x crun exec")
    scale = results.get("scale")
    if scale:
        found.append({"target": f"{scale['containers']} live containers created with no error",
                      "value": scale["errors"], "limit": 0, "unit": "errors",
                      "met": scale["errors"] == 0 and scale["alive"] == scale["containers"]})
        rss = scale["server_rss_mb"]["peak"]
        found.append({"target": "server RSS <= 150 MB", "value": round(rss, 1), "limit": 150,
                      "unit": "MB (peak VmHWM)", "met": rss <= 150})
        p99 = scale["ping"]["throughout"]["p99_ms"]
        found.append({"target": "ping p99 <= 10 ms throughout", "value": round(p99, 2),
                      "limit": 10, "unit": "ms", "met": p99 <= 10})
    stream = results.get("stream", {}).get(OURS)
    if stream:
        rate = stream["median_mb_s"]
        found.append({"target": "stream >= 500 MB/s", "value": round(rate, 1), "limit": 500,
                      "unit": "MB/s (1e6 B)", "met": rate >= 500})
    return found


def print_report(results: dict, peers: Sequence[str]) -> None:
    print()
    print("\n".join(latency_table(results["latency"], peers)))
    deferred = results.get("deferred", {})
    if any(row.get("n") for row in deferred.values()):
        print("deferred: after (1) and (3), work left behind (a peer's netns and veth dying, "
              "our server's cleanup after destroy answered) waited out untimed:\n    " + ", ".join(
                  f"{name} median {row['median_ms']:.1f} ms" for name, row in deferred.items()
                  if row.get("n")))
    stream = results.get("stream")
    if stream:
        print()
        print(f"(5) stream of {stream['bytes'] / 2**30:.0f} GiB of job stdout, median over "
              f"{stream['rounds']} rounds:")
        for system in stream["systems"]:
            row = stream[system]
            print(f"    {system:<7} {row['median_mb_s']:>8.0f} MB/s   ({row['median_s']:.2f} s)")
    scale = results.get("scale")
    if scale:
        print()
        print("\n".join(scale_lines(scale)))
    print()
    print("targets (issue 7):")
    for row in results["targets"]:
        print(f"    [{'met' if row['met'] else 'MISSED':>6}] {row['target']}: "
              f"{row['value']} {row['unit']} (limit {row['limit']})")


def scale_lines(scale: dict) -> list[str]:
    ping = scale["ping"]
    lines = [
        f"(4) {scale['containers']} live containers, {scale['clients']} concurrent clients:",
        f"    create all: {scale['create_s']:.2f} s ({scale['errors']} errors; per create "
        f"median {scale['create_latency']['median_ms']:.1f} ms, p90 "
        f"{scale['create_latency']['p90_ms']:.1f} ms); destroy all: {scale['destroy_s']:.2f} s",
        f"    server RSS: {scale['server_rss_mb']['idle']:.1f} MB idle, "
        f"{scale['server_rss_mb']['with_all']:.1f} MB with all, peak "
        f"{scale['server_rss_mb']['peak']:.1f} MB",
        f"    wshd per container: RSS {scale['wshd']['rss_kb_each']:.0f} kB, PSS "
        f"{scale['wshd']['pss_kb_each']:.0f} kB ({scale['wshd']['count']} processes)",
        "(6) ping latency while (4) runs:",
    ]
    for phase in ("idle", "create", "alive", "destroy", "throughout"):
        row = ping[phase]
        if row.get("n"):
            lines.append(f"    {phase:<10} p50 {row['median_ms']:6.2f} ms   p99 "
                         f"{row['p99_ms']:6.2f} ms   max {row['max_ms']:6.2f} ms   (n={row['n']})")
    return lines


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")
