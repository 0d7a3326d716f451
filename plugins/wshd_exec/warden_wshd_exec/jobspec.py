"""Pure: what a job runs as. Warden's contract (facts §6.2): bash reads the script on stdin,
as the container's user (root when privileged), with a minimal environment and rlimits."""

from __future__ import annotations

import os
from dataclasses import dataclass

RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF
# Linux's RLIMIT_* numbers (asm-generic/resource.h); Python's resource module lacks some.
RLIMIT_NUMBERS = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
    "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14,
}
# Warden's defaults when neither the config nor the request sets a limit (facts §6.2).
DEFAULT_RLIMITS = {
    "as": RLIM_INFINITY, "core": 0, "cpu": RLIM_INFINITY, "data": RLIM_INFINITY,
    "fsize": RLIM_INFINITY, "locks": RLIM_INFINITY, "memlock": 65536, "msgqueue": 819200,
    "nice": 0, "nofile": 1024, "nproc": 1024, "rss": RLIM_INFINITY, "rtprio": 0,
    "sigpending": 1024, "stack": 8 * 1024 * 1024,
}
ROOT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
USER_PATH = "/bin:/usr/bin"
USER_NAME = "vcap"


@dataclass(frozen=True)
class JobSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int
    gid: int
    rlimits: dict[int, tuple[int, int]]


def job_spec(uid: int, privileged: bool, rlimits: dict[str, int], lang: str | None = None) -> JobSpec:
    """The process a job becomes; `rlimits` are the merged config + request values."""
    if privileged:
        user, home, path, uid = "root", "/root", ROOT_PATH, 0
    else:
        user, home, path = USER_NAME, f"/home/{USER_NAME}", USER_PATH
    lang = lang or os.environ.get("LANG") or "en_US.UTF-8"
    limits = {**DEFAULT_RLIMITS, **rlimits}
    return JobSpec(
        argv=["/bin/bash"],
        env={"HOME": home, "USER": user, "PATH": path, "LANG": lang},
        cwd=home, uid=uid, gid=uid,
        rlimits={RLIMIT_NUMBERS[name]: (value, value) for name, value in limits.items()},
    )


def exit_status(exit_code: int | None, signo: int | None) -> int:
    """Warden reports a death by signal as 255 (facts §6.3)."""
    return exit_code if exit_code is not None and signo is None else 255
