"""Contract suites: the behaviour every driver of a subsystem must show, whatever its
mechanism, as pytest classes a plugin subclasses (STYLE §6.7). Owns RootfsContract; not the
drivers, nor the leak checker (plugin.py), which runs around these tests like any other.

A plugin's tests/test_rootfs_contract.py:

    class TestAufsRootfsContract(RootfsContract):
        @pytest.fixture
        def driver(self, rootfs_settings):
            return AufsDriver(rootfs_settings)

        def skip_reason(self, settings):
            ...  # e.g. the driver's check_host message, or None

The hooks are called by keyword, as pluggy calls them, so a misnamed parameter fails here.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..config import Settings, settings_from_dict
from ..container import Container, IdGenerator
from ..errors import WardenError
from ..plugins import build_plugin_manager

CONTRACT_UID = 10001
CONTRACT_NETWORK = ipaddress.IPv4Network("10.254.0.4/30")
LOWER_KEEP = "lower keep\n"

_MNT_DETACH = 0x2
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class RootfsContract:
    """What a rootfs driver guarantees: see hookspecs setup_fs, teardown_fs, copy_in,
    copy_out, info and recover.

    A subclass provides a `driver` fixture (a driver constructed with the `rootfs_settings`
    fixture) and may override `skip_reason` and `upper_dir`. Every container is torn down
    after its test, and a mount the driver leaves is detached and fails the test.
    """

    pytestmark = [pytest.mark.integration]

    # ---- what a subclass provides --------------------------------------------------------

    def skip_reason(self, settings: Settings) -> str | None:
        """Why this host cannot run the driver (e.g. its check_host message), or None."""
        return None

    def upper_dir(self, container: Container) -> Path:
        """Where the driver keeps what the container writes (its writable layer)."""
        return container.path / "upper"

    @pytest.fixture
    def driver(self, rootfs_settings: Settings) -> Any:
        pytest.fail(f"{type(self).__name__} must define a `driver` fixture")

    # ---- fixtures --------------------------------------------------------------------------

    @pytest.fixture
    def rootfs_lower(self, tmp_path: Path) -> Path:
        """A small lower rootfs (make_lower)."""
        return make_lower(tmp_path / "rootfs-lower")

    @pytest.fixture
    def rootfs_settings(self, rootfs_lower: Path) -> Settings:
        return settings_from_dict({"server": {"container_rootfs_path": str(rootfs_lower)},
                                   "drivers": {"disk": None}})

    @pytest.fixture(autouse=True)
    def _rootfs_host_supported(self, rootfs_settings: Settings) -> None:
        if os.geteuid() != 0:
            pytest.skip("rootfs contract: mounting needs root")
        reason = self.skip_reason(rootfs_settings)
        if reason:
            pytest.skip(reason)

    @pytest.fixture
    def container(self, tmp_path: Path, driver: Any) -> Iterator[Container]:
        """A container dir holding only snapshot.json, as the orchestrator hands it over."""
        cid = IdGenerator()()
        path = tmp_path / "depot" / cid
        path.mkdir(parents=True)
        (path / "snapshot.json").write_text("{}")
        c = Container(id=cid, handle=f"contract-{os.getpid()}-{cid}", path=path)
        c.network = CONTRACT_NETWORK
        c.uid = CONTRACT_UID
        yield c
        _tear_down_for_good(driver, c)

    # ---- helpers -----------------------------------------------------------------------------

    @staticmethod
    def setup(driver: Any, container: Container, settings: Settings) -> dict:
        """setup_fs, keeping its record where the orchestrator does."""
        record = driver.setup_fs(container=container, settings=settings)
        container.records["rootfs"] = record
        return record

    @staticmethod
    def assert_nothing_left(container: Container, listing: list[str]) -> None:
        assert mounts_under(container.path) == [], "mounts left under the container dir"
        assert sorted(os.listdir(container.path)) == listing

    # ---- setup and teardown --------------------------------------------------------------

    def test_hook_setup_fs_then_teardown_fs_leaves_nothing(self, driver, container,
                                                           rootfs_settings, rootfs_lower):
        listing, lower_before = sorted(os.listdir(container.path)), tree(rootfs_lower)
        record = self.setup(driver, container, rootfs_settings)
        assert json.loads(json.dumps(record)) == record, "the record must be JSON-able"
        root = container.rootfs_dir
        assert (root / "data" / "keep").read_text() == LOWER_KEEP
        assert (root / "etc" / "hostname").read_text() == f"{container.id}\n"
        passwd = (root / "etc" / "passwd").read_text()
        assert f"vcap:x:{CONTRACT_UID}:{CONTRACT_UID}:" in passwd
        driver.teardown_fs(container=container, record=record)
        self.assert_nothing_left(container, listing)
        assert tree(rootfs_lower) == lower_before, "the lower rootfs changed"

    def test_hook_teardown_fs_twice_is_harmless(self, driver, container, rootfs_settings):
        listing = sorted(os.listdir(container.path))
        record = self.setup(driver, container, rootfs_settings)
        driver.teardown_fs(container=container, record=record)
        driver.teardown_fs(container=container, record=record)
        self.assert_nothing_left(container, listing)

    def test_hook_teardown_fs_without_a_setup_is_harmless(self, driver, container):
        listing = sorted(os.listdir(container.path))
        driver.teardown_fs(container=container, record=None)
        self.assert_nothing_left(container, listing)

    def test_hook_teardown_fs_with_no_record_after_setup_failed_halfway(
            self, driver, container, rootfs_settings, tmp_path):
        # A lower whose /etc is a file: the layers can be made, the /etc files cannot.
        broken = tmp_path / "broken-lower"
        (broken / "data").mkdir(parents=True)
        (broken / "data" / "keep").write_text(LOWER_KEEP)
        (broken / "etc").write_text("not a directory\n")
        container.rootfs_request = str(broken)
        listing, lower_before = sorted(os.listdir(container.path)), tree(broken)
        with pytest.raises(Exception):
            driver.setup_fs(container=container, settings=rootfs_settings)
        driver.teardown_fs(container=container, record=None)
        self.assert_nothing_left(container, listing)
        assert tree(broken) == lower_before, "the lower rootfs changed"

    def test_hook_setup_fs_writes_land_in_the_upper_dir_not_the_lower(
            self, driver, container, rootfs_settings, rootfs_lower):
        lower_before = tree(rootfs_lower)
        self.setup(driver, container, rootfs_settings)
        root, upper = container.rootfs_dir, self.upper_dir(container)
        (root / "data" / "new").write_text("new\n")
        (root / "data" / "keep").write_text("changed\n")
        (root / "data" / "doomed").unlink()
        assert (upper / "data" / "new").read_text() == "new\n"
        assert (upper / "data" / "keep").read_text() == "changed\n"
        assert not (root / "data" / "doomed").exists()
        assert (root / "data" / "keep").read_text() == "changed\n"
        assert tree(rootfs_lower) == lower_before, "the lower rootfs changed"

    def test_hook_setup_fs_refuses_a_missing_rootfs(self, driver, container, rootfs_settings,
                                                   tmp_path):
        missing = tmp_path / "no-such-rootfs"
        container.rootfs_request = str(missing)
        listing = sorted(os.listdir(container.path))
        with pytest.raises(WardenError) as info:
            driver.setup_fs(container=container, settings=rootfs_settings)
        assert str(info.value) == f"rootfs {missing} not found"
        driver.teardown_fs(container=container, record=None)
        self.assert_nothing_left(container, listing)

    def test_hook_setup_fs_refuses_a_missing_bind_mount_source(self, driver, container,
                                                              rootfs_settings, tmp_path):
        missing = tmp_path / "no-such-source"
        container.binds = [{"src": str(missing), "dst": "/mnt/data", "mode": "ro"}]
        listing = sorted(os.listdir(container.path))
        with pytest.raises(WardenError) as info:
            driver.setup_fs(container=container, settings=rootfs_settings)
        assert str(info.value) == f"Source path for bind mount does not exist: {missing}"
        driver.teardown_fs(container=container, record=None)
        self.assert_nothing_left(container, listing)

    # ---- requests on a live container ------------------------------------------------------

    def test_hook_copy_in_then_copy_out_round_trip(self, driver, container, rootfs_settings,
                                                   tmp_path):
        self.setup(driver, container, rootfs_settings)
        src = _make_host_tree(tmp_path / "host-src")
        driver.copy_in(container=container, src_path=str(src), dst_path="/tmp")
        inside = container.rootfs_dir / "tmp" / src.name
        assert (inside / "file").read_text() == "payload\n"
        for p in (inside, inside / "file", inside / "sub" / "deep"):
            st = p.lstat()
            assert (st.st_uid, st.st_gid) == (CONTRACT_UID, CONTRACT_UID), p
        out = tmp_path / "host-out"
        out.mkdir()
        driver.copy_out(container=container, src_path=f"/tmp/{src.name}", dst_path=str(out),
                        owner=None)
        got = out / src.name
        assert tree(got, owners=False) == tree(src, owners=False)
        assert {(e[1], e[2]) for e in tree(got).values()} == {(0, 0)}, "copy_out owner is root"

    def test_hook_info_disk_stat_grows_with_writes(self, driver, container, rootfs_settings):
        self.setup(driver, container, rootfs_settings)
        before = self.disk_stat(driver, container)
        with open(container.rootfs_dir / "tmp" / "grow", "wb") as f:
            f.write(os.urandom(1 << 20))
            os.fsync(f.fileno())
        after = self.disk_stat(driver, container)
        assert after["bytes_used"] >= before["bytes_used"] + (1 << 20)
        assert after["inodes_used"] > before["inodes_used"]

    def test_hook_info_leaves_the_walk_out_of_a_not_full_info(self, driver, container,
                                                              rootfs_settings):
        """Called through pluggy, as the server calls it: pluggy passes no argument the
        implementation gives a default, so `full=True` in a signature would never be False."""
        self.setup(driver, container, rootfs_settings)
        pm = build_plugin_manager({"rootfs": driver}, load_entry_points=False)
        answers = pm.hook.info(container=container, full=False)
        assert not any("disk_stat" in (answer or {}) for answer in answers), answers

    @staticmethod
    def disk_stat(driver: Any, container: Container) -> dict:
        answer = driver.info(container=container, full=True)
        assert answer and "disk_stat" in answer, f"info gave no disk_stat: {answer!r}"
        return answer["disk_stat"]

    # ---- recovery --------------------------------------------------------------------------

    def test_hook_recover_of_an_intact_container_changes_nothing(self, driver, container,
                                                                 rootfs_settings):
        self.setup(driver, container, rootfs_settings)
        (container.rootfs_dir / "tmp" / "kept").write_text("kept\n")
        mounts = mounts_under(container.path)
        driver.recover(container=reloaded(container), settings=rootfs_settings)
        assert mounts_under(container.path) == mounts
        assert (container.rootfs_dir / "tmp" / "kept").read_text() == "kept\n"

    def test_hook_recover_remounts_a_root_the_host_lost(self, driver, container,
                                                        rootfs_settings):
        self.setup(driver, container, rootfs_settings)
        (container.rootfs_dir / "tmp" / "kept").write_text("kept\n")
        if not os.path.ismount(container.rootfs_dir):
            pytest.skip("this driver's root is not a mount of its own")
        detach(container.rootfs_dir)
        assert not os.path.ismount(container.rootfs_dir)
        driver.recover(container=reloaded(container), settings=rootfs_settings)
        assert (container.rootfs_dir / "tmp" / "kept").read_text() == "kept\n"
        assert (container.rootfs_dir / "data" / "keep").read_text() == LOWER_KEEP


# ---- helpers shared by contract suites -------------------------------------------------------

def reloaded(container: Container) -> Container:
    """The container as recovery sees it: through snapshot.json's JSON form."""
    return Container.from_dict(json.loads(json.dumps(container.to_dict())), container.path)


def tree(top: Path, owners: bool = True) -> dict[str, tuple]:
    """Every entry under `top` (not following symlinks): path -> (kind and mode, uid, gid,
    content or link target); without owners, uid and gid are left out."""
    found = {}
    for dirpath, dirs, files in os.walk(top):
        for name in sorted(dirs + files):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                body: bytes | str | None = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                body = Path(path).read_bytes()
            else:
                body = None
            ids = (st.st_uid, st.st_gid) if owners else ()
            found[os.path.relpath(path, top)] = (st.st_mode, *ids, body)
    return found


def mounts_under(top: Path) -> list[str]:
    """Mount points at or below `top` in this mount namespace, deepest first."""
    real = os.path.realpath(top)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        points = [_OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line.split(" ", 5)[4])
                  for line in f]
    found = {p for p in points if p == real or p.startswith(real.rstrip("/") + "/")}
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def detach(target: Path | str) -> None:
    """umount2(target, MNT_DETACH): the test's own unmount, independent of any driver."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(target), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def _tear_down_for_good(driver: Any, container: Container) -> None:
    """The driver's own teardown; then whatever it left mounted is detached, and said."""
    error: BaseException | None = None
    try:
        driver.teardown_fs(container=container, record=None)
    except Exception as exc:  # reported below, after the machine is clean again
        error = exc
    left = mounts_under(container.path)
    for point in left:
        detach(point)
    if error is not None or left:
        pytest.fail(f"teardown_fs(record=None) at the end of the test: error {error!r}, "
                    f"mounts left {left}", pytrace=False)


def make_lower(root: Path) -> Path:
    """A small lower rootfs for rootfs driver tests: root in /etc/passwd and /etc/group,
    /home, /tmp (1777), /data with two files, and /link, a symlink to /data/keep."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "home").mkdir()
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "data").mkdir()
    (root / "data" / "keep").write_text(LOWER_KEEP)
    (root / "data" / "doomed").write_text("lower doomed\n")
    (root / "link").symlink_to("/data/keep")
    return root


def _make_host_tree(src: Path) -> Path:
    (src / "sub").mkdir(parents=True)
    (src / "file").write_text("payload\n")
    os.chmod(src / "file", 0o755)
    (src / "sub" / "deep").write_text("deep\n")
    os.chmod(src / "sub", 0o750)
    (src / "link").symlink_to("file")
    return src
