"""What a front end asks the core for, as types: a container to create, a job to start.

A front end (the Warden protocol today) turns its request into one of these and hands it to
the orchestrator; nothing below the front end sees protocol messages, except `pre_create`,
which gets the front end's request for validation (hookspecs.pre_create). Frozen, so a spec
read by several steps on several threads cannot change under them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _frozen_mapping(value: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class BindMount:
    """A host path mounted into the container; `src` resolved by the server's policy
    (binds.allowed_binds) before any driver sees it."""

    src: str
    dst: str
    mode: str = "ro"  # "ro" or "rw"

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "mode": self.mode}


@dataclass(frozen=True)
class CreateSpec:
    """A create request: every field optional, as in Warden (facts §4). `properties`, `env`
    and `privileged` are Garden's: key/value labels kept with the container, KEY=VALUE pairs
    every process of it gets, and no user namespace (container root is host root)."""

    handle: str | None = None
    grace_time: float | None = None
    network: str | None = None
    rootfs: str | None = None
    bind_mounts: tuple[BindMount, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    env: tuple[str, ...] = ()
    privileged: bool = False
    # The front end's own request, for pre_create validators only (hookspecs.pre_create).
    request: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TTYSize:
    rows: int = 24
    columns: int = 80


@dataclass(frozen=True)
class JobSpec:
    """A job to start. Warden's (facts §6): a bash script read on stdin, as vcap or (privileged)
    root. Garden's: a program (`argv`) with `env`, `dir` and `user`, a client-chosen `name`
    (its process ID), and optionally stdin kept open for the client and a TTY."""

    script: bytes = b""
    privileged: bool = False
    rlimits: Mapping[str, int] = field(default_factory=dict)
    discard_output: bool = False
    log_tag: str | None = None
    # Garden processes: argv None means Warden's bash-reads-the-script job.
    argv: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()  # KEY=VALUE, after the container's env
    dir: str | None = None  # None: the user's home
    user: str | None = None  # "root", "vcap", a name in the container's /etc/passwd, "uid:gid"
    name: str | None = None  # unique among the container's jobs; None: str(job id)
    stdin: bool = False  # a pipe the front end writes (Job.stdin_fd); else stdin is empty
    tty: TTYSize | None = None  # a pseudo-terminal as stdin, stdout and stderr

    def __post_init__(self) -> None:
        object.__setattr__(self, "rlimits", _frozen_mapping(self.rlimits))
        if self.argv is not None and not self.argv:
            raise ValueError("JobSpec.argv: a program to run is needed")
