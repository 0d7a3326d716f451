"""Garden's ProcessSpec (garden-api.md §6.2) as the core's JobSpec: a Run's body checked before
anything starts, with what this server does not do refused by name rather than ignored.

Refused: per-process `limits` (a process's own CPU or memory cgroup inside the container's:
the exec hooks have no such thing, and a limit silently dropped lets a process use what its
client believes it cannot), and per-process `image` / `bind_mounts` (a second root filesystem
for one process). Limits set on the container apply to every process, as Garden's do.
"""

from __future__ import annotations

import uuid
from typing import Any

from warden_framework.errors import WardenError
from warden_framework.specs import JobSpec, TTYSize

# Garden's ResourceLimits keys are the core's rlimit names (hookspecs.spawn, job.rlimits).
RLIMIT_KEYS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
               "nofile", "nproc", "rss", "rtprio", "sigpending", "stack")
# Names of the processes StreamIn and StreamOut run: Garden lists none of them in Info, and a
# client cannot Attach to one or choose such an id.
INTERNAL_PREFIX = "garden-files-"


def process_id(body: dict) -> str:
    """The client's id, or a new one that is safe in a URL path (garden-api.md §8.16)."""
    chosen = body.get("id")
    if chosen in (None, ""):
        return str(uuid.uuid4())
    if not isinstance(chosen, str):
        raise WardenError(f"process spec: id must be a string, not {chosen!r}")
    if chosen.startswith(INTERNAL_PREFIX):
        raise WardenError(f"process ID '{chosen}' is reserved (the prefix {INTERNAL_PREFIX!r} "
                          f"names the server's own StreamIn/StreamOut processes)")
    return chosen


def job_spec(body: Any) -> JobSpec:
    """The JobSpec a Run's body asks for: stdin always open (the client may send it)."""
    if not isinstance(body, dict):
        raise WardenError("process spec: a JSON object is needed")
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise WardenError("process spec: path is required")
    _refuse_unsupported(body)
    return JobSpec(argv=(path, *_strings(body, "args")), env=_strings(body, "env"),
                   dir=_text(body, "dir") or None, user=_text(body, "user") or None,
                   name=process_id(body), stdin=True, tty=tty_size(body.get("tty")),
                   rlimits=_rlimits(body.get("rlimits")))


def tty_size(tty: Any, current: TTYSize | None = None) -> TTYSize | None:
    """A TTYSpec's size: None without a TTY; a missing or zero field keeps `current`'s (80x24
    for a new TTY)."""
    if tty is None:
        return None
    if not isinstance(tty, dict):
        raise WardenError(f"process spec: tty must be an object, not {tty!r}")
    base = current or TTYSize()
    size = tty.get("window_size") or {}
    if not isinstance(size, dict):
        raise WardenError(f"process spec: tty.window_size must be an object, not {size!r}")
    rows, columns = size.get("rows") or base.rows, size.get("columns") or base.columns
    for name, value in (("rows", rows), ("columns", columns)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 16:
            raise WardenError(f"process spec: tty.window_size.{name} must be 1-65535, not {value!r}")
    return TTYSize(rows=rows, columns=columns)


def _refuse_unsupported(body: dict) -> None:
    if _any_set(body.get("limits")):
        raise WardenError("process spec: per-process limits are not supported; set memory and "
                          "CPU limits on the container")
    image = body.get("image") or {}
    if not isinstance(image, dict) or image.get("uri"):
        raise WardenError("process spec: per-process images are not supported; a process runs "
                          "in its container's root filesystem")
    if body.get("bind_mounts"):
        raise WardenError("process spec: per-process bind mounts are not supported; give them "
                          "to the container at create")


def _any_set(value: Any) -> bool:
    """Whether a ProcessLimits object sets anything (Go omits zero fields; `{}` sets nothing)."""
    if isinstance(value, dict):
        return any(_any_set(v) for v in value.values())
    return value not in (None, 0, False, "")


def _strings(body: dict, key: str) -> tuple[str, ...]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WardenError(f"process spec: {key} must be a list of strings")
    return tuple(value)


def _text(body: dict, key: str) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise WardenError(f"process spec: {key} must be a string, not {value!r}")
    return value


def _rlimits(value: Any) -> dict[str, int]:
    """The set ResourceLimits (absent or null: not set; 0 is a real limit)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WardenError("process spec: rlimits must be an object")
    limits = {}
    for key, limit in value.items():
        if limit is None:
            continue
        if key not in RLIMIT_KEYS:
            raise WardenError(f"process spec: unknown rlimit {key!r} (known: {', '.join(RLIMIT_KEYS)})")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit < 1 << 64:
            raise WardenError(f"process spec: rlimits.{key} must be an unsigned integer, not {limit!r}")
        limits[key] = limit
    return limits
