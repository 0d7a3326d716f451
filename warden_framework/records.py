"""The records that cross the hook boundary, typed: what one subsystem's setup returns and
another subsystem's hook reads. Everything else in a record is its driver's own business
(JSON-able, written to snapshot.json, handed back to its teardown and recover).

A record is a plain dict at run time (it goes to JSON and back); these TypedDicts name the
keys other subsystems rely on, so a driver author sees in one place what must be there.
"""

from __future__ import annotations

from typing import TypedDict


class ExecRecord(TypedDict, total=False):
    """setup_init's record. `pid`: the host pid of the container's init, whose network
    namespace setup_net attaches the container's end of the link to."""

    pid: int


class LimitsRecord(TypedDict, total=False):
    """apply_limits' record. `tasks`: the `tasks` (v1) or `cgroup.procs` (v2) file of every
    group the container's init must be born in; setup_init has it write "0" to each."""

    tasks: list[str]


class DiskRecord(TypedDict, total=False):
    """setup_disk's record. `subvolume`: a volume made for the container (btrfs) that
    setup_fs puts the writable layer in; absent when the disk driver makes none."""

    subvolume: str


# Records no other subsystem reads: their keys are the driver's.
FsRecord = dict
NetRecord = dict
JobRecord = dict
