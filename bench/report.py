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
    "lifecycle_cleanup": "(1) the same, answered + cleanup finished",
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
    """Issue 7's and issue 14's targets, each with the measured value, the limit and whether
    it is met (None: not measured in this run)."""
    return [*_lifecycle_targets(results), *_sustained_targets(results.get("sustained")),
            *_scale_targets(results.get("scale") or []), *_stream_targets(results)]


def _target(issue: int, name: str, value, limit, unit: str, met: bool | None) -> dict:
    return {"issue": issue, "target": name, "value": value, "limit": limit, "unit": unit,
            "met": met}


def _versus_crun(latency: dict, ours: str, crun: str) -> float | None:
    """Our median of measure `ours` over crun's of measure `crun`."""
    mine, crun = latency.get(ours, {}).get(OURS), latency.get(crun, {}).get("crun")
    if not mine or not crun or not mine.get("n") or not crun.get("n"):
        return None
    return mine["median_ms"] / crun["median_ms"]


def _at_most(issue: int, name: str, value: float | None, limit: float, unit: str,
             digits: int = 3) -> dict:
    return _target(issue, name, None if value is None else round(value, digits), limit, unit,
                   None if value is None else value <= limit)


def _lifecycle_targets(results: dict) -> list[dict]:
    latency = results.get("latency", {})
    return [
        _at_most(7, "lifecycle (1) answered <= 0.5x crun",
                 _versus_crun(latency, "lifecycle", "lifecycle"), 0.5, "x crun median"),
        _at_most(7, "run true in a live container <= 0.5x crun exec",
                 _versus_crun(latency, "exec", "exec"), 0.5, "x crun median"),
        _at_most(14, "lifecycle (1) answered + cleanup finished <= 0.5x crun's lifecycle",
                 _versus_crun(latency, "lifecycle_cleanup", "lifecycle"), 0.5,
                 "x crun median (answered)"),
    ]


def _sustained_targets(sustained: dict | None) -> list[dict]:
    found = []
    for count in (4, 8):
        name = (f"sustained lifecycles/s, {count} clients >= 2x crun's, no backlog growing")
        rows = (sustained or {}).get("runs", {}).get(str(count), {})
        mine, crun = rows.get(OURS), rows.get("crun")
        if not mine or not crun or not crun["per_s"]:
            found.append(_target(14, name, None, 2.0, "x crun", None))
            continue
        ratio = mine["per_s"] / crun["per_s"]
        grew = mine["backlog"].get("grew")
        found.append(_target(14, name, round(ratio, 3), 2.0,
                             f"x crun ({'backlog grew' if grew else 'backlog steady'})",
                             ratio >= 2.0 and grew is False))
    return found


def _scale_targets(runs: list[dict]) -> list[dict]:
    """Issue 7's on the smallest run (250 containers), issue 14's on a run of 1,000 or more."""
    found = []
    small = min(runs, key=lambda r: r["containers"], default=None)
    if small:
        found += [
            _target(7, f"{small['containers']} live containers created with no error",
                    small["errors"], 0, "errors",
                    small["errors"] == 0 and small["alive"] == small["containers"]),
            _at_most(7, f"server RSS <= 150 MB ({small['containers']} live)",
                     small["server_rss_mb"]["peak"], 150, "MB (peak VmHWM)", 1),
            _at_most(7, f"ping p99 <= 10 ms throughout ({small['containers']} live)",
                     small["ping"]["throughout"].get("p99_ms"), 10, "ms", 2),
        ]
    large = max((r for r in runs if r["containers"] >= 1000), key=lambda r: r["containers"],
                default=None)
    if not large:
        return found + [_target(14, "1,000 live containers (zero errors, flat create, RSS, "
                                    "ping p99 <= 5 ms, destroy-all)", None, "-", "", None)]
    live = f"{large['containers']} live"
    tenths = large["create_by_tenth"]
    growth = (tenths[-1]["median_ms"] / tenths[0]["median_ms"]
              if tenths[0].get("n") and tenths[-1].get("n") else None)
    return found + [
        _target(14, f"{live}: zero errors (create, list, run true)",
                large["errors"] + large["run_errors"], 0, "errors",
                large["errors"] + large["run_errors"] == 0
                and large["alive"] == large["containers"]),
        _at_most(14, f"{live}: create median, last tenth <= 1.25x first", growth, 1.25,
                 "x first tenth"),
        _at_most(14, f"{live}: server RSS <= 150 MB", large["server_rss_mb"]["peak"], 150,
                 "MB (peak VmHWM)", 1),
        _at_most(14, f"{live}: ping p99 <= 5 ms throughout",
                 large["ping"]["throughout"].get("p99_ms"), 5, "ms", 2),
        _target(14, f"{live}: destroy-all with zero errors", large["destroy_errors"], 0,
                "errors", large["destroy_errors"] == 0),
    ]


def _stream_targets(results: dict) -> list[dict]:
    stream = results.get("stream", {})
    mine, crun = stream.get(OURS), stream.get("crun")
    rate = mine["median_mb_s"] if mine else None
    return [
        _target(7, "stream >= 500 MB/s", None if rate is None else round(rate, 1), 500,
                "MB/s (1e6 B)", None if rate is None else rate >= 500),
        _target(14, "stream >= 1.0x crun's pipe",
                round(rate / crun["median_mb_s"], 3) if rate and crun else None, 1.0, "x crun",
                rate / crun["median_mb_s"] >= 1.0 if rate and crun else None),
        _target(14, "stream >= 1 GB/s (moonshot)", None if rate is None else round(rate, 1),
                1000, "MB/s (1e6 B)", None if rate is None else rate >= 1000),
    ]


def print_report(results: dict, peers: Sequence[str]) -> None:
    print()
    print("\n".join(latency_table(results["latency"], peers)))
    deferred = results.get("deferred", {})
    if any(row.get("n") for row in deferred.values()):
        print("deferred: after (1) and (3), work left behind (a peer's netns and veth dying, "
              "our server's cleanup after destroy answered) waited out, timed apart:\n    " +
              ", ".join(f"{name} median {row['median_ms']:.1f} ms"
                        for name, row in deferred.items() if row.get("n")))
    stream = results.get("stream")
    if stream:
        print()
        print(f"(5) stream of {stream['bytes'] / 2**30:.0f} GiB of job stdout, median over "
              f"{stream['rounds']} rounds:")
        for system in stream["systems"]:
            row = stream[system]
            print(f"    {system:<8} {row['median_mb_s']:>8.0f} MB/s   ({row['median_s']:.2f} s)")
    for scale in results.get("scale") or []:
        print()
        print("\n".join(scale_lines(scale)))
    if results.get("sustained"):
        print()
        print("\n".join(sustained_lines(results["sustained"])))
    if results.get("restart"):
        print()
        print("\n".join(restart_lines(results["restart"])))
    print()
    print("targets (issues 7 and 14):")
    for row in results["targets"]:
        mark = "n/a" if row["met"] is None else "met" if row["met"] else "MISSED"
        value = "not measured" if row["value"] is None else f"{row['value']} {row['unit']}"
        print(f"    [{mark:>6}] #{row['issue']} {row['target']}: {value} (limit {row['limit']})")


def scale_lines(scale: dict) -> list[str]:
    ping, create, run = scale["ping"], scale["create_latency"], scale["run_alive"]
    rss, wshd = scale["server_rss_mb"], scale["wshd"]
    cleanup = scale.get("destroy_cleanup_s")
    tenths = " ".join(f"{row['median_ms']:.0f}" if row.get("n") else "-"
                      for row in scale["create_by_tenth"])
    lines = [
        f"(4) {scale['containers']} live containers, {scale['clients']} concurrent clients:",
        (f"    create all: {scale['create_s']:.2f} s ({scale['errors']} errors; per create "
         f"median {create.get('median_ms', 0):.1f} ms, p90 {create.get('p90_ms', 0):.1f} ms)"),
        f"    create median by tenth of the live count, ms: {tenths}",
        (f"    run true with all live: median {run.get('median_ms', 0):.1f} ms, p90 "
         f"{run.get('p90_ms', 0):.1f} ms (n={run['n']}, {scale['run_errors']} errors)"),
        (f"    destroy all: {scale['destroy_s']:.2f} s answered ({scale['destroy_errors']} "
         "errors), " + (f"{cleanup:.2f} s until cleanup finished" if cleanup is not None
                        else "cleanup not finished")),
        (f"    server RSS: {rss['idle']:.1f} MB idle, {rss['with_all']:.1f} MB with all, "
         f"peak {rss['peak']:.1f} MB"),
        (f"    wshd per container: RSS {wshd['rss_kb_each']:.0f} kB, PSS "
         f"{wshd['pss_kb_each']:.0f} kB ({wshd['count']} processes)"),
    ]
    for kind in ("error_texts", "run_error_texts", "destroy_error_texts"):
        for text in scale.get(kind, [])[:3]:
            lines.append(f"    {kind.replace('_texts', '').replace('_', ' ')}: {text}")
    lines.append(f"(6) ping latency while (4) with {scale['containers']} runs:")
    for phase in ("idle", "create", "alive", "destroy", "throughout"):
        row = ping[phase]
        if row.get("n"):
            lines.append(f"    {phase:<10} p50 {row['median_ms']:6.2f} ms   p99 "
                         f"{row['p99_ms']:6.2f} ms   max {row['max_ms']:6.2f} ms   (n={row['n']})")
    return lines


def restart_lines(result: dict) -> list[str]:
    """(9): drain, the way back until the server lists every container, the first run."""
    if "start_s" not in result:
        return [f"(9) restart with {result['containers']} live: not finished "
                f"({result['errors']} create errors)"]
    return [
        f"(9) restart with {result['containers']} live containers:",
        (f"    drain {result['drain_s']:.2f} s (exit {result['drain_exit']}); start until it "
         f"answered and listed {result['listed']}: {result['start_s']:.2f} s; then run true "
         f"{result['first_run_ms']:.1f} ms (exit {result['run_exit']})"),
        (f"    {result['errors']} create errors, {result['destroy_errors']} destroy errors, "
         f"cleanup {'finished' if result['cleaned'] else 'NOT finished'}"),
    ]


def sustained_lines(sustained: dict) -> list[str]:
    """(7): per client count and system, lifecycles/s and ratios, lifecycle latency, the
    backlog (containers held beyond those in flight) over the window, drain, CPU."""
    systems = sustained["systems"]
    crun_like = [name for name in systems if name != OURS]
    head = (f"{'clients':>7} {'system':<8} {'per s':>7}" +
            "".join(f" {'x ' + name:>10}" for name in crun_like) +
            f" {'p50 ms':>7} {'p90 ms':>7} {'backlog 1st/last third, max, end':>33}"
            f" {'grew':>5} {'drain s':>8} {'CPU ms':>7} {'+drain':>7} {'errors':>6}")
    title = (f"(7) sustained: each client loops create + run true + destroy for "
             f"{sustained['seconds']:g} s")
    lines = [title, head, "-" * len(head)]
    for count, rows in sustained["runs"].items():
        for name, row in rows.items():
            backlog = row["backlog"]
            trend = (f"{backlog['first_third']:.1f}/{backlog['last_third']:.1f}, "
                     f"{backlog['max']}, {backlog['end']}" if backlog.get("grew") is not None
                     else "-")
            ratios_to = "".join(
                f" {row['per_s'] / rows[other]['per_s']:>10.2f}"
                if other != name and other in rows and rows[other]['per_s'] else f" {'':>10}"
                for other in crun_like)
            lc = row["lifecycle"]
            cpu, cpu_all = row["cpu_ms_per_lifecycle"], row.get("cpu_ms_per_lifecycle_drained")
            drain = row["drain_s"]
            lines.append(
                f"{count:>7} {name:<8} {row['per_s']:>7.1f}{ratios_to}"
                f" {lc.get('median_ms', 0):>7.1f} {lc.get('p90_ms', 0):>7.1f} {trend:>33}"
                f" {_yes_no(backlog.get('grew')):>5}"
                f" {'never' if drain is None else f'{drain:.2f}':>8}"
                f" {'-' if cpu is None else f'{cpu:.0f}':>7}"
                f" {'-' if cpu_all is None else f'{cpu_all:.0f}':>7} {row['errors']:>6}")
            for text in row["error_texts"][:3]:
                lines.append(f"        error: {text}")
    lines.append("(backlog: containers whose objects the system still held beyond those in "
                 "flight, sampled every second; grew: its last third's mean above the first "
                 "third's maximum + 1; drain: from the last answer until it held nothing; CPU "
                 "ms: the host's busy CPU per lifecycle completed in the window, every process "
                 "included; +drain: from the window's start until drained, per lifecycle "
                 "answered)")
    return lines


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")
