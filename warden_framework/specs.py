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


def _frozen_mapping(value: Mapping[str, int]) -> Mapping[str, int]:
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
    """A create request: every field optional, as in Warden (facts §4)."""

    handle: str | None = None
    grace_time: float | None = None
    network: str | None = None
    rootfs: str | None = None
    bind_mounts: tuple[BindMount, ...] = ()
    # The front end's own request, for pre_create validators only (hookspecs.pre_create).
    request: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class JobSpec:
    """A job to start: a bash script read on stdin (facts §6)."""

    script: bytes
    privileged: bool = False
    rlimits: Mapping[str, int] = field(default_factory=dict)
    discard_output: bool = False
    log_tag: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rlimits", _frozen_mapping(self.rlimits))
