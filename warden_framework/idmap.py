"""The host id range of one container's user namespace: pure arithmetic, no kernel calls.

With `user.namespaces` on, container ids 0..size-1 (uid and gid alike) are host ids
host_base..host_base+size-1, and the range follows from the container's pool uid, so two
live containers never share a host id. Host root (0) is never inside any range.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import UserSettings


@dataclass(frozen=True)
class IdMap:
    host_base: int
    size: int

    def to_host(self, inside: int) -> int:
        """The host id of container id `inside`."""
        if not 0 <= inside < self.size:
            raise ValueError(f"id {inside} is outside the container's range 0..{self.size - 1}")
        return self.host_base + inside

    def to_container(self, host: int) -> int | None:
        """The container id of host id `host`, or None if it is not mapped."""
        inside = host - self.host_base
        return inside if 0 <= inside < self.size else None

    def map_line(self) -> str:
        """The uid_map / gid_map text for this range."""
        return f"0 {self.host_base} {self.size}\n"

    def to_list(self) -> list[int]:
        return [self.host_base, self.size]

    @classmethod
    def from_list(cls, value: list[int] | None) -> IdMap | None:
        return cls(int(value[0]), int(value[1])) if value else None


def for_pool_uid(user: UserSettings, uid: int) -> IdMap | None:
    """The range of the container that holds pool uid `uid`; None when namespaces are off."""
    if not user.namespaces:
        return None
    index = uid - user.pool_start_uid
    return IdMap(user.namespace_start_uid + index * user.namespace_size, user.namespace_size)


def host_ranges(user: UserSettings) -> range | None:
    """Every host id some container may be mapped to; None when namespaces are off."""
    if not user.namespaces:
        return None
    return range(user.namespace_start_uid,
                 user.namespace_start_uid + user.pool_size * user.namespace_size)
