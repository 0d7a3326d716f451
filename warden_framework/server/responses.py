"""Warden response messages built from the core's answers: a container's info fields and a
finished job's output. Shared by the dispatcher and the Run fast path (short_run.py)."""

from __future__ import annotations

from typing import Any

from ..jobs import Job
from ..protocol import pb

STAT_MESSAGES = {"memory_stat": pb.MemoryStat, "cpu_stat": pb.CpuStat, "disk_stat": pb.DiskStat,
                 "bandwidth_stat": pb.BandwidthStat, "pid_stat": pb.PidStat}


def info_response(fields: dict | None) -> pb.InfoResponse:
    """The InfoResponse of orchestrator.info's fields (an empty one for None)."""
    resp = pb.InfoResponse()
    for key, value in (fields or {}).items():
        if value is None:
            continue
        if key in STAT_MESSAGES:
            getattr(resp, key).CopyFrom(STAT_MESSAGES[key](**value))
        elif key == "events":
            resp.events.extend(value)
        elif key == "job_ids":
            resp.job_ids.extend(value)
        elif key == "container_path":
            resp.container_path = value.encode("utf-8", "surrogateescape")
        elif key in ("state", "host_ip", "container_ip"):
            setattr(resp, key, value)
    return resp


def job_response(job: Job, response_cls: Any, info: pb.InfoResponse, output_limit: int) -> Any:
    """A Link, Run or Stream-end style answer for a finished job: status, output, info."""
    stdout, stderr = job.read_output(output_limit)
    return response_cls(exit_status=job.exit_status, stdout=stdout, stderr=stderr, info=info)
