"""The disk contract: what every disk driver guarantees, whatever its mechanism (vfs user
quotas, btrfs qgroups, a future XFS project quota), as a pytest class a plugin subclasses
(STYLE §6.7; the rootfs and limits ones are contract.py and limits_contract.py).

A plugin's tests/test_disk_contract.py:

    class TestBtrfsDiskContract(DiskContract):
        driver_class = BtrfsDriver

        @pytest.fixture
        def depot(self, tmp_path):  # optional: a depot on a filesystem the driver supports
            ...

Hooks go through a real pluggy PluginManager holding only the driver (plugins.py, as the
server builds it), so an unmarked hook, a misnamed parameter or a wrong firstresult answer
fails here. Limits are shown by the kernel: a process with the container's quota uid writes
into the container's writable area and gets EDQUOT, or does not.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..config import Settings, settings_from_dict
from ..container import Container, IdGenerator
from ..errors import WardenError
from ..idmap import for_pool_uid
from ..plugins import build_plugin_manager
from . import leaks
from .contract import detach, mounts_under, reloaded
from .driver_contract import DriverContract

KiB, MiB = 1 << 10, 1 << 20
SLACK = 32000  # bytes Info may differ from what was written (Warden's quota spec)
CHUNK = bytes(range(256)) * 256  # 64 KiB of a pattern, so data read back proves itself
LOOP_CLR_FD = 0x4C01  # <linux/loop.h>
RELEASE_WAIT = 2.0  # seconds for the kernel to free a loop device after the last unmount
RESPONSE_FIELDS = ("block_limit", "block", "block_soft", "block_hard",
                   "byte_limit", "byte", "byte_soft", "byte_hard",
                   "inode_limit", "inode", "inode_soft", "inode_hard")
# Refused requests: each holds a valid limit too, so a half-applied request would show.
BAD_REQUESTS = {
    "negative": ({"byte_limit": MiB, "block_soft": -1}, "block_soft"),
    "unknown field": ({"byte_limit": MiB, "bytes_max": 5}, "bytes_max"),
    "not an integer": ({"block_limit": 1024, "byte_hard": "2M"}, "byte_hard"),
    "bytes past uint64": ({"block_limit": 1024, "byte_hard": 2**64 - 1}, "byte_hard"),
    "blocks past 2^63 bytes": ({"byte_limit": MiB, "block": 2**53 + 1}, "block"),
    "inodes past 2^63": ({"byte_limit": MiB, "inode_hard": 2**64}, "inode_hard"),
}


@dataclass(frozen=True)
class Written:
    """What a write as the quota uid achieved: bytes accepted, and the errno that stopped it
    (None when every byte was written and synced) at `stage` (open, write, fsync, ...)."""

    written: int
    errno: int | None
    stage: str


class DiskContract(DriverContract):
    """What a disk driver guarantees: see hookspecs setup_host, teardown_host, setup_disk,
    teardown_disk, limit_disk, info, snapshot and recover, and Driver.check_host.

    A subclass sets `driver_class` and may override `depot` (a fixture), `settings_data`,
    `skip_reason`, `quota_uid`, `writable_dir` and `left_behind`.
    """

    # ---- what a subclass may change (and skip_reason, DriverContract's) ---------------------

    def settings_data(self, depot: Path) -> dict:
        return {"server": {"container_depot_path": str(depot),
                           "name_prefix": "wtd" + secrets.token_hex(3)}}  # "wt": leak checker

    @pytest.fixture
    def depot(self, tmp_path: Path) -> Path:
        """The depot directory; override to put it on a filesystem the driver supports."""
        return tmp_path / "depot"

    def quota_uid(self, container: Container) -> int:
        """The host uid whose writes the quota counts: vcap's, through the container's id map."""
        return container.host_id(container.uid)

    def writable_dir(self, container: Container) -> Path:
        """Where setup_fs would put the container's writable layer: in the volume the disk
        record names ({"subvolume": path}), else in the container's directory."""
        subvolume = (container.records.get("disk") or {}).get("subvolume")
        return Path(subvolume) if subvolume else container.path

    def left_behind(self, settings: Settings, container: Container,
                    record: dict | None) -> list[str]:
        """What of `record` still exists after teardown_disk; a subclass adds the kernel
        objects only it can see (qgroups, quota entries)."""
        subvolume = (record or {}).get("subvolume")
        return [f"subvolume {subvolume}"] if subvolume and os.path.lexists(subvolume) else []

    # ---- fixtures --------------------------------------------------------------------------

    @pytest.fixture
    def disk_settings(self, depot: Path) -> Settings:
        if os.geteuid() != 0:
            pytest.skip("disk contract: needs root (quotas, mounts, writes as other uids)")
        depot.mkdir(parents=True, exist_ok=True)
        settings = settings_from_dict(self.settings_data(depot))
        reason = self.skip_reason(settings)
        if reason:
            pytest.skip(reason)
        return settings

    @pytest.fixture
    def start_server(self, tmp_path: Path) -> Iterator[Callable[[Settings], Any]]:
        """start_server(settings): a new driver behind a plugin manager, after setup_host, as
        a server starts; returns pm.hook. Afterwards teardown_host runs for each, and any mount
        or loop device left under tmp_path is removed, and fails the test."""
        started: list[tuple[Any, Settings]] = []

        def start(settings: Settings) -> Any:
            driver = self.driver_class(settings)
            hooks = build_plugin_manager({"disk": driver}, load_entry_points=False).hook
            started.append((hooks, settings))
            hooks.setup_host(settings=settings)
            return hooks

        yield start
        errors = []
        for hooks, settings in reversed(started):
            try:
                hooks.teardown_host(settings=settings)
            except Exception as exc:  # noqa: BLE001 - every server's teardown runs
                errors.append(exc)
        settled_state(tmp_path, {"mounts": [], "loop devices": set()}, files=False)
        left = _force_host_cleanup(tmp_path)
        if errors or left:
            pytest.fail(f"teardown_host: errors {errors!r}, left {left}", pytrace=False)

    @pytest.fixture
    def hooks(self, disk_settings: Settings, start_server) -> Any:
        return start_server(disk_settings)

    @pytest.fixture
    def new_container(self, hooks: Any,
                      disk_settings: Settings) -> Iterator[Callable[..., Container]]:
        """new_container(uid=None, setup=True): a container with its own pool uid and id map,
        given to setup_disk (record kept where the orchestrator keeps it) and an `upper` dir in
        its writable area owned by the quota uid. Each is torn down (record None) after the
        test; an error or anything left behind fails the test."""
        made: list[Container] = []
        ids = IdGenerator()

        def make(uid: int | None = None, setup: bool = True) -> Container:
            user = disk_settings.user
            uid = user.pool_start_uid + len(made) if uid is None else uid
            cid = ids()
            c = Container(id=cid, handle=f"disk-contract-{cid}", path=disk_settings.depot / cid,
                          uid=uid, id_map=for_pool_uid(user, uid))
            c.path.mkdir(mode=0o700)
            made.append(c)
            if setup:
                self.setup(hooks, c, disk_settings)
            return c

        yield make
        problems = []
        for c in reversed(made):
            record = c.records.get("disk")
            try:
                hooks.teardown_disk(container=c, record=None)
            except Exception as exc:  # noqa: BLE001 - every container is torn down
                problems.append(f"{c.id}: {exc!r}")
            problems += self.left_behind(disk_settings, c, record)
            shutil.rmtree(c.path, ignore_errors=True)  # what teardown_fs removes: the files
        if problems:
            pytest.fail(f"teardown_disk(record=None) after the test: {problems}", pytrace=False)

    # ---- helpers -----------------------------------------------------------------------------

    def setup(self, hooks: Any, container: Container, settings: Settings) -> dict:
        record = hooks.setup_disk(container=container, settings=settings)
        container.records["disk"] = record
        upper = self.upper(container)
        upper.mkdir()
        uid = self.quota_uid(container)
        os.chown(upper, uid, uid)
        return record

    def upper(self, container: Container) -> Path:
        return self.writable_dir(container) / "upper"

    def write(self, container: Container, name: str, size: int) -> Written:
        return write_as(self.quota_uid(container), self.upper(container), name, size)

    @staticmethod
    def disk_stat(hooks: Any, container: Container) -> dict:
        fields = merged(hooks.info(container=container, full=True))
        assert "disk_stat" in fields, f"info gave no disk_stat: {fields!r}"
        return fields["disk_stat"]

    # ---- setup_disk ------------------------------------------------------------------------

    def test_hook_setup_disk_record_and_snapshot_are_json(self, hooks, new_container):
        """setup_disk Returns: a record (JSON-able, into snapshot.json); snapshot Returns:
        JSON-able state."""
        c = new_container()
        record = c.records["disk"]
        assert isinstance(record, dict) and json.loads(json.dumps(record)) == record
        for state in hooks.snapshot(container=c):
            assert state is None or json.loads(json.dumps(state)) == state

    def test_hook_setup_disk_starts_unlimited_even_for_a_reused_uid(self, hooks, new_container):
        """setup_disk: "reset the uid's quota" (facts §5.8: new containers start unlimited),
        even when an earlier owner of the uid left a limit (its server was killed)."""
        earlier = new_container()
        hooks.limit_disk(container=earlier, limits={"byte_limit": MiB})
        c = new_container(uid=earlier.uid)
        assert hooks.limit_disk(container=c, limits={}) == dict.fromkeys(RESPONSE_FIELDS, 0)
        assert self.write(c, "two-mib", 2 * MiB) == Written(2 * MiB, None, "done")

    # ---- limit_disk ------------------------------------------------------------------------

    def test_hook_limit_disk_returns_the_twelve_fields_consistently(self, hooks, new_container):
        """limit_disk Returns: the twelve LimitDiskResponse fields read back: bytes round up
        to 1 KiB blocks, block_limit = block = block_hard, byte_* = block_* x 1024,
        inode_limit = inode = inode_hard."""
        c = new_container()
        answer = hooks.limit_disk(container=c, limits={"byte_limit": 2 * MiB + 100})
        assert sorted(answer) == sorted(RESPONSE_FIELDS)
        assert answer["block_limit"] == answer["block"] == answer["block_hard"] == 2049
        for kind in ("limit", "soft", "hard"):
            assert answer[f"byte_{kind}"] == answer[f"block_{kind}"] * KiB, kind
        assert answer["byte"] == answer["block"] * KiB
        assert answer["inode_limit"] == answer["inode"] == answer["inode_hard"]
        assert hooks.limit_disk(container=c, limits={}) == answer, "an empty request reads back"
        assert hooks.limit_disk(container=c, limits={"block_limit": 12345})["block_limit"] == 12345

    def test_hook_limit_disk_byte_limit_stops_writes_with_edquot(self, hooks, new_container):
        """limit_disk sets the quota: past the byte limit a write as the quota uid into the
        writable area fails with EDQUOT (facts §5.8: 1 MiB of 2 MiB fits, 4 MiB does not)."""
        c = new_container()
        hooks.limit_disk(container=c, limits={"byte_limit": 2 * MiB})
        small = self.write(c, "small", MiB)
        assert small == Written(MiB, None, "done")
        big = self.write(c, "big", 4 * MiB)
        assert big.errno == errno.EDQUOT, big
        assert small.written + big.written <= 2 * MiB, big

    def test_hook_limit_disk_below_usage_keeps_the_data_and_stops_writes(self, hooks,
                                                                         new_container):
        """limit_disk: a limit below current usage is accepted; the data stays and further
        writes fail with EDQUOT, even ones that alone would fit under the limit."""
        c = new_container()
        assert self.write(c, "data", 3 * MiB) == Written(3 * MiB, None, "done")
        answer = hooks.limit_disk(container=c, limits={"byte_limit": 2 * MiB})
        assert answer["byte_limit"] == 2 * MiB
        assert (self.upper(c) / "data").read_bytes() == CHUNK * (3 * MiB // len(CHUNK))
        more = self.write(c, "more", 256 * KiB)
        assert more.errno == errno.EDQUOT, more

    @pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
    def test_hook_limit_disk_refuses_bad_values_and_keeps_the_quota(self, hooks, new_container,
                                                                    case):
        """limit_disk On failure: raise WardenError (naming the field); the old quota stays."""
        request, field_name = BAD_REQUESTS[case]
        c = new_container()
        before = hooks.limit_disk(container=c, limits={"byte_limit": 3 * MiB})
        with pytest.raises(WardenError) as refused:
            hooks.limit_disk(container=c, limits=request)
        assert field_name in str(refused.value)
        assert hooks.limit_disk(container=c, limits={}) == before

    def test_limits_of_two_containers_are_independent(self, hooks, new_container):
        """limit_disk changes only its container's quota, and teardown_disk of one leaves the
        other's limit in force."""
        first, second = new_container(), new_container()
        hooks.limit_disk(container=first, limits={"byte_limit": MiB})
        kept = hooks.limit_disk(container=second, limits={"byte_limit": 4 * MiB})
        assert self.write(first, "two", 2 * MiB).errno == errno.EDQUOT
        assert self.write(second, "two", 2 * MiB) == Written(2 * MiB, None, "done")
        hooks.teardown_disk(container=first, record=first.records["disk"])
        assert hooks.limit_disk(container=second, limits={}) == kept
        assert self.write(second, "three", 3 * MiB).errno == errno.EDQUOT

    # ---- info ------------------------------------------------------------------------------

    def test_hook_info_usage_grows_by_what_was_written(self, hooks, new_container):
        """info Returns: disk_stat with bytes_used and inodes_used of the container; a 1 MiB
        file adds 1 MiB (within Warden's 32000 bytes) and one inode."""
        c = new_container()
        before = self.disk_stat(hooks, c)
        assert self.write(c, "one", MiB) == Written(MiB, None, "done")
        after = self.disk_stat(hooks, c)
        assert abs(after["bytes_used"] - before["bytes_used"] - MiB) <= SLACK, (before, after)
        assert after["inodes_used"] == before["inodes_used"] + 1, (before, after)

    # ---- teardown_disk ---------------------------------------------------------------------

    def test_hook_teardown_disk_removes_what_setup_made_and_lifts_the_limit(
            self, hooks, disk_settings, new_container):
        """teardown_disk undoes setup_disk: nothing of the record is left, and the quota uid
        is no longer limited where the container's limit held it (a released uid is free)."""
        c = new_container()
        record = c.records["disk"]
        hooks.limit_disk(container=c, limits={"byte_limit": MiB})
        assert self.write(c, "half", MiB // 2).errno is None
        hooks.teardown_disk(container=c, record=record)
        assert self.left_behind(disk_settings, c, record) == []
        if self.upper(c).is_dir():  # the limit held writes here: they must pass now
            assert self.write(c, "after", 2 * MiB) == Written(2 * MiB, None, "done")

    def test_hook_teardown_disk_twice_and_without_a_record(self, hooks, disk_settings,
                                                           new_container):
        """teardown_disk: idempotent; with the record None (a server killed during create)
        it finds what setup made from the container's id."""
        c = new_container()
        record = c.records["disk"]
        hooks.limit_disk(container=c, limits={"byte_limit": MiB})
        as_recovered = Container(id=c.id, handle=c.handle, path=c.path, uid=c.uid,
                                 id_map=c.id_map)  # no records: none reached snapshot.json
        hooks.teardown_disk(container=as_recovered, record=None)
        assert self.left_behind(disk_settings, c, record) == []
        hooks.teardown_disk(container=c, record=record)
        hooks.teardown_disk(container=as_recovered, record=None)
        assert self.left_behind(disk_settings, c, record) == []

    def test_hook_teardown_disk_without_a_setup_is_harmless(self, hooks, new_container):
        """teardown_disk May assume: nothing (rollback of a create that failed before it)."""
        c = new_container(setup=False)
        hooks.teardown_disk(container=c, record=None)
        assert os.listdir(c.path) == []

    # ---- host ------------------------------------------------------------------------------

    def test_hook_setup_host_twice_changes_nothing(self, hooks, disk_settings, tmp_path,
                                                   new_container):
        """setup_host MUST be idempotent: no second mount, loop device or file; the first
        still works."""
        before = host_state(tmp_path)
        hooks.setup_host(settings=disk_settings)
        assert_same_state(host_state(tmp_path), before, "after setup_host again")
        c = new_container()
        hooks.limit_disk(container=c, limits={"byte_limit": MiB})
        assert self.write(c, "two", 2 * MiB).errno == errno.EDQUOT

    def test_hook_teardown_host_twice_leaves_no_mount_or_loop_device(self, disk_settings,
                                                                     start_server, tmp_path):
        """teardown_host removes what setup_host made (mounts, loop devices, files); idempotent."""
        before = host_state(tmp_path)
        hooks = start_server(disk_settings)
        hooks.teardown_host(settings=disk_settings)
        hooks.teardown_host(settings=disk_settings)
        assert_same_state(settled_state(tmp_path, before), before, "after teardown_host twice")

    # ---- recover ---------------------------------------------------------------------------

    def test_hook_recover_keeps_the_limit_of_a_live_container(self, hooks, disk_settings,
                                                              start_server, new_container):
        """recover: a new server (new driver, setup_host again) re-attaches to a container
        known only through snapshot.json; its limit reads back and still holds."""
        c = new_container()
        kept = hooks.limit_disk(container=c, limits={"byte_limit": MiB})
        again = start_server(disk_settings)
        survivor = reloaded(c)
        again.recover(container=survivor, settings=disk_settings)
        assert again.limit_disk(container=survivor, limits={}) == kept
        assert self.write(survivor, "two", 2 * MiB).errno == errno.EDQUOT

    # ---- disk quotas turned off ----------------------------------------------------------

    def test_with_disk_quota_disabled_every_hook_is_a_no_op(self, depot, tmp_path,
                                                            start_server):
        """quota.disk_quota_enabled false: check_host passes (on any host), setup_disk
        returns {}, info adds no disk_stat, and no hook touches a file, mount or loop
        device. limit_disk is not called: the core answers an empty response (facts §5.8)."""
        depot.mkdir(parents=True, exist_ok=True)
        data = self.settings_data(depot)
        data["quota"] = {"disk_quota_enabled": False}
        settings = settings_from_dict(data)
        self.driver_class.check_host(settings)
        cid = IdGenerator()()
        c = Container(id=cid, handle=cid, path=depot / cid, uid=settings.user.pool_start_uid,
                      id_map=for_pool_uid(settings.user, settings.user.pool_start_uid))
        c.path.mkdir()
        def state() -> tuple[dict, dict]:  # the depot may be elsewhere (a subclass's fixture)
            return host_state(tmp_path), host_state(depot)

        before = state()
        hooks = start_server(settings)
        record = hooks.setup_disk(container=c, settings=settings)
        assert record == {}
        c.records["disk"] = record
        assert "disk_stat" not in merged(hooks.info(container=c, full=True))
        for state in hooks.snapshot(container=c):
            assert state is None or json.loads(json.dumps(state)) == state
        hooks.recover(container=reloaded(c), settings=settings)
        assert_same_state(state(), before, "with quotas off, after setup_disk, info, recover")
        hooks.teardown_disk(container=c, record=record)
        hooks.teardown_disk(container=c, record=None)
        hooks.teardown_host(settings=settings)
        assert_same_state(state(), before, "with quotas off, after the teardowns")


# ---- helpers -----------------------------------------------------------------------------------

def merged(answers: list) -> dict:
    """A gathering hook's answers as the server merges them."""
    fields: dict = {}
    for answer in answers:
        fields.update(answer or {})
    return fields


def write_as(uid: int, directory: Path, name: str, size: int) -> Written:
    """Write `size` bytes (CHUNK repeated) to directory/name as host uid and gid `uid` with no
    supplementary groups, then fsync: in a forked child that enters `directory` while still
    root (the test's private tmp dirs above need not be searchable by uid; the venv's python
    may not be executable by it, so no exec)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(_write_in_child(uid, directory, name, size)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    return Written(**json.loads(report))


def _write_in_child(uid: int, directory: Path, name: str, size: int) -> dict:
    written, stage = 0, "enter"
    try:
        os.chdir(directory)
        stage = "become the uid"
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        stage = "open"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            stage = "write"
            while written < size:
                written += os.write(fd, CHUNK[:size - written])
            stage = "fsync"
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return {"written": written, "errno": exc.errno, "stage": stage}
    return {"written": written, "errno": None, "stage": "done"}


def host_state(top: Path, files: bool = True) -> dict:
    """Mounts and loop devices under `top`, and (with `files`) every entry under it with its
    mode, owner and size: what a no-op hook must leave as it was. Contents are not read (a
    sparse btrfs image is gigabytes)."""
    real = os.path.realpath(top)
    loops = {entry for entry in leaks.loop_devices()
             if entry.split(" ", 1)[1].startswith(real + "/")}
    state: dict = {"mounts": mounts_under(top), "loop devices": loops}
    if files:
        state["files"] = {}
        for dirpath, dirs, names in os.walk(top):
            for name in dirs + names:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                state["files"][os.path.relpath(path, top)] = (st.st_mode, st.st_uid, st.st_size)
    return state


def settled_state(top: Path, wanted: dict, files: bool = True) -> dict:
    """host_state(top) once it equals `wanted`, or after RELEASE_WAIT seconds. A loop device
    is freed when the last reference to its filesystem goes, and a mount namespace another
    process clones meanwhile (any container start on this host) holds a copy for a moment."""
    deadline = time.monotonic() + RELEASE_WAIT
    while (state := host_state(top, files)) != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


def assert_same_state(after: object, before: object, when: str) -> None:
    """This module is not assertion-rewritten (it is no test file): say the difference."""
    assert after == before, f"{when}: host state changed from {before!r} to {after!r}"


def _force_host_cleanup(top: Path) -> list[str]:
    """Detach whatever is still mounted under `top` and free loop devices backed by files
    under it; return what there was."""
    state = host_state(top, files=False)
    for point in state["mounts"]:
        detach(point)
    for entry in state["loop devices"]:
        device = "/dev/" + entry.split(" ", 1)[0]
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, LOOP_CLR_FD)
        finally:
            os.close(fd)
    return state["mounts"] + sorted(state["loop devices"])
