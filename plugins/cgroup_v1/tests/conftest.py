"""Fixtures: a fake cgroup v1 tree under tmp_path for unit tests, and a unique prefix on the
real /sys/fs/cgroup (removed with every group under it, even when a test fails)."""

import errno
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_cgroup_v1 import cgroups, kernel

# Control files a new group gets, per controller, with their initial text.
CONTROL_FILES = {
    "cpu": {"cpu.shares": "1024\n"},
    "cpuacct": {"cpuacct.usage": "0\n", "cpuacct.stat": "user 0\nsystem 0\n"},
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n", "cgroup.clone_children": "0\n"},
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.memsw.limit_in_bytes": "9223372036854771712\n",
        "memory.stat": "",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "cgroup.event_control": "",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
}
MEMORY_LIMIT = "memory.limit_in_bytes"
MEMSW_LIMIT = "memory.memsw.limit_in_bytes"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs root and the real kernel")


class FakeCgroupFs:
    """A cgroup root under tmp_path that imitates the kernel where a directory cannot.

    mkdir fills a new group with its controllers' control files, rmdir refuses a group with
    processes or child groups (EBUSY), kill_and_wait takes pids out of every cgroup.procs,
    and the memory limits keep limit <= memsw (EINVAL) and refuse a limit below
    `memory_usage` (EBUSY). Every control-file write is recorded in `writes`.
    """

    def __init__(self, base: Path, monkeypatch: pytest.MonkeyPatch, mounts: list[str]) -> None:
        self.root = base / "cgroup"
        self.mountinfo = base / "mountinfo"
        self.proc_cgroups = base / "cgroups"
        self.writes: list[tuple[Path, str]] = []
        self.kills: list[tuple[list[int], int]] = []
        self.memory_usage = 0
        self._write_real = kernel.write_control
        self.mounts = mounts
        self._build()
        monkeypatch.setattr(kernel, "make_group", self.make_group)
        monkeypatch.setattr(kernel, "remove_group", self.remove_group)
        monkeypatch.setattr(kernel, "write_control", self.write_control)
        monkeypatch.setattr(kernel, "kill_and_wait", self.kill_and_wait)

    def hierarchies(self) -> dict[str, Path]:
        return cgroups.discover_hierarchies(self.root, self.mountinfo, self.proc_cgroups)

    def put_process(self, group: Path, pid: int) -> None:
        procs = group / "cgroup.procs"
        procs.write_text(procs.read_text() + f"{pid}\n")

    # -- kernel fakes

    def make_group(self, path: Path) -> bool:
        if path.exists():
            return False
        path.mkdir()
        self._populate(path, self._controllers_of(path))
        return True

    def remove_group(self, path: Path) -> bool:
        if not path.exists():
            return False
        if (path / "cgroup.procs").read_text().split() or any(p.is_dir() for p in path.iterdir()):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        shutil.rmtree(path)
        return True

    def write_control(self, path: Path, value: str) -> None:
        self._check_memory_rules(path, value)
        self._write_real(path, value)
        self.writes.append((path, value))

    def kill_and_wait(self, pids: list[int], sig: int, timeout: float) -> list[int]:
        self.kills.append((list(pids), sig))
        for procs in self.root.rglob("cgroup.procs"):
            kept = [p for p in procs.read_text().split() if int(p) not in pids]
            procs.write_text("".join(f"{p}\n" for p in kept))
        return []

    # -- internals

    def _build(self) -> None:
        lines = []
        for i, mount in enumerate(self.mounts):
            mount_point = self.root / mount
            mount_point.mkdir(parents=True)
            self._populate(mount_point, mount.split(","))
            if "cpuset" in mount.split(","):
                (mount_point / "cpuset.cpus").write_text("0-1\n")
                (mount_point / "cpuset.mems").write_text("0\n")
            fields = f"{30 + i} 23 0:{30 + i} / {mount_point} rw,relatime"
            lines.append(f"{fields} - cgroup cgroup rw,{mount}")
        lines.append(f"40 23 0:40 / {self.root}/systemd rw - cgroup cgroup rw,xattr,name=systemd")
        lines.append(f"41 23 0:41 / {self.root}/unified rw - cgroup2 cgroup2 rw")
        self.mountinfo.write_text("\n".join(lines) + "\n")
        enabled = ["cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "pids"]
        self.proc_cgroups.write_text(
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
            + "".join(f"{name}\t1\t1\t1\n" for name in enabled)
            + "net_cls\t0\t1\t0\n"
        )

    def _controllers_of(self, path: Path) -> list[str]:
        return path.relative_to(self.root).parts[0].split(",")

    def _populate(self, path: Path, controllers: list[str]) -> None:
        for name in ("cgroup.procs", "tasks"):
            (path / name).write_text("")
        for controller in controllers:
            for name, text in CONTROL_FILES.get(controller, {}).items():
                (path / name).write_text(text)

    def _check_memory_rules(self, path: Path, value: str) -> None:
        if path.name == MEMORY_LIMIT:
            memsw = path.parent / MEMSW_LIMIT
            if memsw.exists() and int(value) > int(memsw.read_text()):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(path))
            if int(value) < self.memory_usage:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        if path.name == MEMSW_LIMIT and int(value) < int((path.parent / MEMORY_LIMIT).read_text()):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(path))


SEPARATE_MOUNTS = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"]


@pytest.fixture
def fake_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupFs:
    return FakeCgroupFs(tmp_path, monkeypatch, SEPARATE_MOUNTS)


@pytest.fixture
def combined_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupFs:
    return FakeCgroupFs(tmp_path, monkeypatch, ["cpu,cpuacct", "cpuset", "memory", "devices"])


# --------------------------------------------------------------------------- real kernel

REAL_ROOT = cgroups.DEFAULT_ROOT


def _real_kernel_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not (REAL_ROOT / "memory" / "memory.memsw.limit_in_bytes").exists():
        return f"no cgroup v1 memory hierarchy with swap accounting at {REAL_ROOT}/memory"
    return None


@pytest.fixture
def real_kernel() -> None:
    """Skip, saying why, unless this is root on a host with cgroup v1 and swap accounting."""
    reason = _real_kernel_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def real_prefix(real_kernel: None) -> Iterator[str]:
    """A prefix unique to this test; every group under it is removed afterwards."""
    prefix = f"wt{os.getpid()}x{secrets.token_hex(3)}"
    yield prefix
    for id in cgroups.list_ids(REAL_ROOT, prefix):
        cgroups.remove(REAL_ROOT, prefix, id)
    assert cgroups.remove_prefix(REAL_ROOT, prefix)


class Children:
    """Python child processes that wait for a line on stdin before running their code, so a
    test can place them in a cgroup first. Killed and reaped at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, code: str) -> subprocess.Popen:
        waiting = "import sys; sys.stdin.readline()\n" + code
        proc = subprocess.Popen(
            [sys.executable, "-c", waiting],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def go(proc: subprocess.Popen) -> None:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    yield kids
    kids.close()
