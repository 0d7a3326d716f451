"""Real kernel, any cgroup2 mount (on this hybrid host the controller-less
/sys/fs/cgroup/unified): the prefix group, a container group, processes born and moved in,
emptying by cgroup.kill, by freezing and by plain signals, the populated wait, rmdir, and
the host check's refusals. Every group lives under a prefix unique to the test."""

import os
import signal
import time
from pathlib import Path

import pytest

from warden_cgroup_v2 import events, groups, hierarchy, kernel, oom, stats
from warden_cgroup_v2.driver import CgroupV2Driver
from warden_cgroup_v2.errors import CgroupError
from warden_framework.config import settings_from_dict
from warden_framework.errors import DriverUnavailable

pytestmark = pytest.mark.integration

WAIT = 30.0  # deadline for the kernel to act; never reached when things work
SPAWN_GRANDCHILD = (
    "import subprocess\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'])\n"
    "print(g.pid, flush=True); sys.stdin.read()"
)
# Forks without end, each child living a moment: without a freeze or cgroup.kill, a new
# process can appear between reading cgroup.procs and the signals.
FORK_FOREVER = (
    "import time\n"
    "print('forking', flush=True)\n"
    "while True:\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(0.05); os._exit(0)\n"
    "    try:\n"
    "        os.waitpid(-1, os.WNOHANG)\n"
    "    except ChildProcessError:\n"
    "        pass\n"
)


@pytest.fixture
def group(v2_root: Path, v2_prefix: str) -> Path:
    path = groups.group_path(v2_root, v2_prefix, "c1")
    groups.create(path)
    return path


def _start_in(group: Path, children, code: str):
    """Start a child, move it in by pid (as an operator would), then let it run `code`."""
    proc = children.start(code)
    kernel.write_control(group / groups.CGROUP_PROCS, str(proc.pid))
    children.go(proc)
    return proc


def _cgroup_of(pid: int) -> str:
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return next(line for line in lines if line.startswith("0::"))[3:]


# --------------------------------------------------------------------------- prefix


def test_setup_makes_the_prefix_with_every_offered_controller_and_teardown_is_idempotent(
    v2_root: Path,
):
    prefix = "wt" + os.urandom(4).hex()
    try:
        top = hierarchy.setup(v2_root, prefix)
        hierarchy.setup(v2_root, prefix)  # again: nothing duplicated, no error
        assert top.is_dir()
        wanted = hierarchy.REQUIRED_CONTROLLERS + hierarchy.OPTIONAL_CONTROLLERS
        offered = [c for c in wanted if c in hierarchy.controllers(v2_root)]
        assert set(offered) <= set(hierarchy.enabled(top))
    finally:
        hierarchy.teardown(v2_root, prefix)
    assert not (v2_root / prefix).exists()
    hierarchy.teardown(v2_root, prefix)


def test_teardown_removes_leftover_empty_groups(v2_root: Path, v2_prefix: str):
    (v2_root / v2_prefix / "gone1" / "nested").mkdir(parents=True)
    (v2_root / v2_prefix / "gone2").mkdir()
    hierarchy.teardown(v2_root, v2_prefix)
    assert not (v2_root / v2_prefix).exists()


def test_teardown_refuses_a_group_with_processes_and_names_it(group: Path, v2_root, v2_prefix,
                                                              v2_children):
    _start_in(group, v2_children, "sys.stdin.read()")
    with pytest.raises(CgroupError, match=f"^remove cgroup {group}: .*busy.*holds processes"):
        hierarchy.teardown(v2_root, v2_prefix)
    assert group.is_dir()


# --------------------------------------------------------------------------- processes


def test_a_process_writing_zero_into_cgroup_procs_is_born_in_the_group(group: Path, v2_root,
                                                                       v2_children):
    proc = v2_children.start("sys.stdin.read()", join=groups.procs_file(group))
    assert proc.stdout.readline() == "joined\n"
    assert groups.pids(group) == [proc.pid]
    assert _cgroup_of(proc.pid).endswith("/" + str(group.relative_to(v2_root)))
    assert events.read(group / events.CGROUP_EVENTS)[events.POPULATED] == 1


@pytest.mark.parametrize("method", [groups.KILL, groups.FREEZE, groups.SIGNAL])
def test_remove_kills_a_process_and_its_child_then_rmdirs(group: Path, v2_children, method):
    if method != groups.SIGNAL and not (group / f"cgroup.{method}").exists():
        pytest.skip(f"kernel has no cgroup.{method} (kill: 5.14+, freeze: 5.2+)")
    proc = _start_in(group, v2_children, SPAWN_GRANDCHILD)
    grandchild = int(proc.stdout.readline())
    assert groups.pids(group) == sorted([proc.pid, grandchild])

    groups.remove(group, method=method)
    assert proc.wait(timeout=WAIT) == -signal.SIGKILL
    assert not group.exists()
    assert not Path(f"/proc/{grandchild}").exists() or _is_zombie(grandchild)


def test_freezing_closes_the_fork_race(group: Path, v2_children):
    if not (group / groups.CGROUP_FREEZE).exists():
        pytest.skip("kernel has no cgroup.freeze (5.2+)")
    proc = _start_in(group, v2_children, FORK_FOREVER)
    assert proc.stdout.readline() == "forking\n"
    groups.remove(group, method=groups.FREEZE)
    assert proc.wait(timeout=WAIT) == -signal.SIGKILL
    assert not group.exists()


def test_remove_thaws_what_it_froze_when_it_cannot_finish(group: Path, v2_children,
                                                          monkeypatch: pytest.MonkeyPatch):
    if not (group / groups.CGROUP_FREEZE).exists():
        pytest.skip("kernel has no cgroup.freeze (5.2+)")
    proc = _start_in(group, v2_children, "sys.stdin.read()")
    monkeypatch.setattr(kernel, "kill_all", lambda pids: None)  # signals lost: cannot empty
    expected = rf"^remove cgroup {group}: processes \[{proc.pid}\] did not exit"
    with pytest.raises(CgroupError, match=expected):
        groups.remove(group, timeout=0.5, method=groups.FREEZE)
    assert events.read(group / events.CGROUP_EVENTS)[events.FROZEN] == 0
    assert proc.poll() is None


def test_remove_is_idempotent(group: Path):
    groups.remove(group)
    groups.remove(group)
    groups.remove(group.parent / "never-made")
    assert not group.exists()


def test_wait_for_populated_zero_wakes_when_the_last_process_exits(group: Path, v2_children):
    proc = _start_in(group, v2_children, "sys.stdin.read()")
    assert not events.wait_for(group, events.POPULATED, 0, time.monotonic() + 0.2)
    proc.kill()
    assert events.wait_for(group, events.POPULATED, 0, time.monotonic() + WAIT)
    kernel.remove_group(group)  # populated 0: rmdir works at once, even before the reap


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


# --------------------------------------------------------------------------- cpu.stat


def test_cpu_stat_counts_a_busy_child_and_open_files_reread(group: Path, v2_children):
    files = stats.OpenStatFiles()
    try:
        before = stats.cpu_stat(group, files.read)["usage"]
        proc = _start_in(group, v2_children, "sum(range(3_000_000))")
        assert proc.wait(timeout=WAIT) == 0
        after = stats.cpu_stat(group, files.read)
    finally:
        files.close()
    assert after["usage"] > before
    assert after["user"] + after["system"] >= 0


# --------------------------------------------------------------------------- host check


def _check(root: Path) -> str:
    settings = settings_from_dict({"server": {"cgroup_root": str(root)}})
    with pytest.raises(DriverUnavailable) as info:
        CgroupV2Driver.check_host(settings)
    return str(info.value)


def test_check_host_refuses_a_directory_that_is_not_cgroup2(tmp_path: Path):
    assert _check(tmp_path).startswith(f"{tmp_path} is not a cgroup2 mount")


def test_check_host_refuses_this_hosts_tmpfs_cgroup_root():
    root = Path("/sys/fs/cgroup")
    if kernel.filesystem_magic(root) == hierarchy.CGROUP2_SUPER_MAGIC:
        pytest.skip(f"{root} is cgroup2 here (a pure v2 host)")
    text = _check(root)
    assert text.startswith(f"{root} is not a cgroup2 mount (it is tmpfs)")
    assert "cgroup_v1" in text


def test_check_host_refuses_a_cgroup2_group_without_controllers(v2_root: Path, v2_prefix: str):
    bare = v2_root / v2_prefix / "bare"
    (bare / "inner").mkdir(parents=True)  # "bare" enables nothing, so "inner" is offered nothing
    text = _check(bare / "inner")
    assert text.startswith(f"cgroup2 at {bare / 'inner'} lacks the memory, cpu, pids controllers")
    assert "cgroup.controllers: empty" in text and "bound to cgroup v1" in text


def test_check_host_refuses_this_hosts_unified_mount_for_its_missing_memory_controller():
    root = Path("/sys/fs/cgroup/unified")
    if not root.is_dir() or kernel.filesystem_magic(root) != hierarchy.CGROUP2_SUPER_MAGIC:
        pytest.skip(f"no hybrid cgroup2 mount at {root}")
    assert "lacks the memory" in _check(root)


def test_oom_watch_without_the_memory_controller_names_the_group(group: Path):
    if (group / events.MEMORY_EVENTS).exists():
        pytest.skip("the memory controller is on here; test_driver_kernel covers OOM")
    expected = f"^watch out-of-memory events of cgroup {group}: No such file"
    with pytest.raises(CgroupError, match=expected):
        oom.OomWatch.open(group)
