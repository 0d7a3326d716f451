"""WshdDriver's hooks on the real kernel, called by keyword as pluggy calls them: a real wshd
on a copy of the default rootfs (build/rootfs, which has bash), jobs as the orchestrator
makes them. Every container's init is killed after its test and checked gone."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from warden_framework.config import settings_from_dict
from warden_framework.container import Container
from warden_framework.errors import DriverError, DriverUnavailable, WardenError
from warden_framework.idmap import IdMap
from warden_framework.jobs import Job
from warden_wshd_exec import kernel, processes
from warden_wshd_exec.driver import WshdDriver
from warden_wshd_exec.wshd_client import is_alive, read_pid_file

pytestmark = [pytest.mark.integration]

JOB_TIMEOUT = 20.0
ID_MAP_BASE = 2_100_000_000  # far above any uid the host or other tests use


def wait_for(condition: Callable[[], bool], what: str, timeout: float = JOB_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def alive(pid: int) -> bool:
    """True while pid runs (a zombie has exited: whoever adopted it reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_under(path: Path) -> list[int]:
    """Live processes whose command line names `path` (the container's wshd)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        if os.fsencode(path) in cmdline and alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.fixture
def container(driver, settings, new_container) -> Container:
    """An active container: setup_init then start_init, the record where the orchestrator
    keeps it."""
    box = new_container()
    box.records["exec"] = driver.setup_init(container=box, settings=settings)
    driver.start_init(container=box, record=box.records["exec"])
    return box


@pytest.fixture
def spawn(driver, settings) -> Callable[..., Job]:
    """spawn(container, script, privileged=False, rlimits={}) -> Job, as the orchestrator
    makes it: a job dir, the record kept on the job."""
    counter = iter(range(1, 1000))

    def start(box: Container, script: str, privileged: bool = False,
              rlimits: dict[str, int] | None = None, linger: float = 0.0,
              output_limit: int | None = None) -> Job:
        job_id = next(counter)
        job = Job(id=job_id, dir=box.jobs_dir / str(job_id), script=script.encode(),
                  privileged=privileged, rlimits=rlimits or {}, linger=linger,
                  output_limit=output_limit)
        job.dir.mkdir()
        job.record = driver.spawn(container=box, job=job, settings=settings)
        box.jobs[job_id] = job
        return job

    return start


def finished(job: Job) -> int:
    wait_for(lambda: job.done, f"job {job.id} to finish")
    return job.exit_status  # type: ignore[return-value]


def init_of(box: Container) -> int:
    return box.records["exec"]["pid"]


def jobs_running(box: Container) -> list[int]:
    """Live processes in the container's pid namespace but its init (zombies have exited
    and wait for the init to reap them)."""
    return [pid for pid in processes.members(init_of(box)) if alive(pid)]


# ------------------------------------------------------------------------------ the init

def test_hook_setup_init_starts_the_init_in_new_namespaces_and_start_init_awaits_it(
        driver, settings, new_container) -> None:
    box = new_container()
    record = driver.setup_init(container=box, settings=settings)
    box.records["exec"] = record
    pid = record["pid"]
    assert alive(pid)
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    driver.start_init(container=box, record=record)
    assert is_alive(box.run_dir)
    assert read_pid_file(box.run_dir) == pid


def test_hook_setup_init_without_a_root_fails_naming_the_container(
        driver, settings, new_container) -> None:
    box = new_container()
    shutil.rmtree(box.rootfs_dir)
    with pytest.raises(DriverError, match=f"^start wshd for {box.id}: wshd: --root "):
        driver.setup_init(container=box, settings=settings)
    assert processes_under(box.path) == []


def test_hook_start_init_lets_jobs_run_with_the_containers_hostname(driver, settings,
                                                                   new_container, spawn) -> None:
    box = new_container()
    box.records["exec"] = driver.setup_init(container=box, settings=settings)
    driver.start_init(container=box, record=box.records["exec"])
    job = spawn(box, "hostname")
    assert finished(job) == 0
    assert job.stdout_path.read_text() == f"{box.id}\n"


def test_hook_start_init_reports_a_setup_failure_inside_the_container(
        driver, settings, new_container, tmp_path) -> None:
    # An empty read-only directory over /dev: the init finds no /dev/null for its stdio.
    empty = tmp_path / "empty"
    empty.mkdir()
    box = new_container(binds=[{"src": str(empty), "dst": "/dev", "mode": "ro"}])
    box.records["exec"] = driver.setup_init(container=box, settings=settings)
    with pytest.raises(DriverError, match=(f"^wshd of {box.id} did not start: "
                                           r"wshd: open /dev/null: No such file or directory$")):
        driver.start_init(container=box, record=box.records["exec"])
    wait_for(lambda: not alive(init_of(box)), "the failed init to die")
    assert not (box.run_dir / "wshd.sock").exists()


def test_hook_setup_init_refuses_a_bind_target_below_a_file(driver, settings, new_container,
                                                            tmp_path) -> None:
    # /bin/busybox is a file: the launcher cannot make the mount point, before any clone.
    box = new_container(binds=[{"src": str(tmp_path), "dst": "/bin/busybox/x", "mode": "rw"}])
    with pytest.raises(DriverError, match=(f"^start wshd for {box.id}: wshd: bind onto "
                                           r"/bin/busybox/x: open /bin/busybox in the root: "
                                           r"Not a directory$")):
        driver.setup_init(container=box, settings=settings)
    assert processes_under(box.path) == []


def test_hook_setup_init_with_an_id_map_gives_the_init_a_user_namespace(
        driver, settings, new_container, spawn) -> None:
    box = new_container()
    box.id_map = IdMap(host_base=ID_MAP_BASE, size=65536)
    # The server shifts the rootfs into the range; here only root's home needs to be its own.
    os.chown(box.rootfs_dir / "root", ID_MAP_BASE, ID_MAP_BASE)
    box.records["exec"] = driver.setup_init(container=box, settings=settings)
    driver.start_init(container=box, record=box.records["exec"])
    pid = init_of(box)
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(ID_MAP_BASE), "65536"]
    job = spawn(box, "id -u; cat /proc/self/uid_map", privileged=True)
    assert finished(job) == 0
    assert job.stdout_path.read_text().split() == ["0", "0", str(ID_MAP_BASE), "65536"]


def test_hook_teardown_init_kills_the_init_and_its_jobs_and_twice_is_harmless(
        driver, container, spawn) -> None:
    job = spawn(container, "sleep 1000")
    wait_for(lambda: jobs_running(container), "the job to start")
    members = jobs_running(container)
    driver.teardown_init(container=container, record=container.records["exec"])
    assert not alive(init_of(container))
    assert [pid for pid in members if alive(pid)] == []
    assert finished(job) == 255
    driver.teardown_init(container=container, record=container.records["exec"])


def test_hook_teardown_init_before_start_init_kills_the_held_init(driver, settings,
                                                                  new_container) -> None:
    box = new_container()
    record = driver.setup_init(container=box, settings=settings)
    driver.teardown_init(container=box, record=record)
    assert not alive(record["pid"])
    assert processes_under(box.path) == []


def test_hook_teardown_init_without_record_finds_the_init_by_its_pid_file(
        settings, container) -> None:
    fresh = WshdDriver(settings)  # as recovery after a restart: nothing in memory
    fresh.teardown_init(container=container, record=None)
    assert not alive(init_of(container))
    assert processes_under(container.path) == []


# ---------------------------------------------------------------------------------- jobs

def test_hook_spawn_runs_the_script_in_bash_as_the_containers_user(container, spawn) -> None:
    job = spawn(container, 'id -u; pwd; echo "$USER $HOME ${BASH_VERSION%%.*}"\n'
                           "echo oops >&2\nexit 3\n")
    assert job.record["pid"] > 0
    assert finished(job) == 3
    assert job.stdout_path.read_text() == f"{container.uid}\n/home/vcap\nvcap /home/vcap 5\n"
    assert job.stderr_path.read_text() == "oops\n"
    assert job.status_path.read_text() == "exit 3\n"


def test_hook_spawn_gives_wshd_the_output_limit_only_where_the_record_says_it_copies(
        container, spawn) -> None:
    """A container whose init an older server started (its exec record has no output_mux)
    gets its jobs' files directly: that wshd would refuse the OUTPUT_LIMIT field."""
    assert container.records["exec"]["output_mux"] is True
    muxed = spawn(container, "readlink /proc/self/fd/1; sleep 0.2", output_limit=1 << 20)
    del container.records["exec"]["output_mux"]
    direct = spawn(container, "readlink /proc/self/fd/1", output_limit=1 << 20)
    assert finished(muxed) == 0 and finished(direct) == 0
    assert muxed.stdout_path.read_text().startswith("pipe:")
    assert direct.stdout_path.read_text().startswith("/") and "stdout" in direct.stdout_path.read_text()


def test_hook_spawn_with_linger_finishes_a_short_job_before_returning(container, spawn) -> None:
    job = spawn(container, "echo quick; exit 4", linger=5.0)
    assert job.done and job.exit_status == 4
    assert job.stdout_path.read_text() == "quick\n"


def test_hook_spawn_with_linger_leaves_a_longer_job_to_the_reaper(container, spawn) -> None:
    job = spawn(container, "sleep 0.3; exit 5", linger=0.01)
    assert not job.done
    assert finished(job) == 5


def test_hook_spawn_privileged_runs_as_root_with_the_rlimits(container, spawn) -> None:
    job = spawn(container, "id -u; pwd; ulimit -n", privileged=True, rlimits={"nofile": 123})
    assert finished(job) == 0
    assert job.stdout_path.read_text() == "0\n/root\n123\n"


def test_hook_spawn_without_a_serving_init_fails_and_starts_nothing(driver, settings,
                                                                    new_container) -> None:
    box = new_container()
    box.run_dir.mkdir()
    job = Job(id=1, dir=box.jobs_dir / "1", script=b"touch /tmp/ran")
    job.dir.mkdir()
    with pytest.raises(WardenError, match=f"^spawn job in {box.handle}: "):
        driver.spawn(container=box, job=job, settings=settings)
    assert not job.done
    assert not (box.rootfs_dir / "tmp" / "ran").exists()


def test_hook_signal_job_reaches_the_jobs_whole_process_group(driver, container,
                                                              spawn) -> None:
    job = spawn(container, "sleep 1000 & sleep 1000\n")
    wait_for(lambda: len(jobs_running(container)) == 3, "bash and two sleeps")
    driver.signal_job(container=container, job=job, signo=signal.SIGKILL)
    assert finished(job) == 255
    assert job.status_path.read_text() == "signal 9\n"
    wait_for(lambda: not jobs_running(container), "the background sleep to die with its group")


def test_hook_signal_job_of_a_finished_job_is_harmless(driver, container, spawn) -> None:
    job = spawn(container, "exit 0")
    assert finished(job) == 0
    driver.signal_job(container=container, job=job, signo=signal.SIGKILL)
    # The same job as a server that has not seen its exit yet: wshd answers no such job.
    unseen = Job(id=job.id, dir=job.dir, record=dict(job.record))
    driver.signal_job(container=container, job=unseen, signo=signal.SIGKILL)
    assert not unseen.done and job.exit_status == 0
    assert is_alive(container.run_dir)


def test_hook_stop_terminates_every_job_and_keeps_the_init(driver, container, spawn) -> None:
    jobs = [spawn(container, "sleep 1000"), spawn(container, "sleep 1000 & wait")]
    wait_for(lambda: len(jobs_running(container)) == 4, "two bashes and two sleeps")
    driver.stop(container=container, kill=False, timeout=10.0)
    assert jobs_running(container) == []
    assert [finished(job) for job in jobs] == [255, 255]
    assert is_alive(container.run_dir), "stop keeps the init"


def in_pid_namespace_of(init: int) -> list[int]:
    """Every live process sharing the init's pid namespace, by a scan of all of /proc:
    independent of processes.members, which walks the init's descendants."""
    ns = os.readlink(f"/proc/{init}/ns/pid")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != init:
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns and alive(int(entry)):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def test_hook_stop_reaches_orphans_the_init_adopted(driver, container, spawn) -> None:
    job = spawn(container, "(sleep 1000 &); echo forked\n")
    assert finished(job) == 0
    init = init_of(container)
    wait_for(lambda: in_pid_namespace_of(init), "the orphaned sleep")
    assert {pid for pid in processes.members(init) if alive(pid)} == set(in_pid_namespace_of(init))
    driver.stop(container=container, kill=False, timeout=10.0)
    assert in_pid_namespace_of(init) == []


def test_hook_stop_kills_what_ignores_term_after_the_timeout(driver, container, spawn) -> None:
    job = spawn(container, "trap '' TERM; echo ready; exec sleep 1000\n")
    wait_for(lambda: job.stdout_path.read_text() == "ready\n", "the job to ignore TERM")
    driver.stop(container=container, kill=False, timeout=0.2)
    assert jobs_running(container) == []
    assert finished(job) == 255
    assert job.status_path.read_text() == "signal 9\n"


def test_hook_stop_with_kill_sends_kill_at_once(driver, container, spawn) -> None:
    job = spawn(container, "sleep 1000")
    wait_for(lambda: len(jobs_running(container)) == 2, "bash and its sleep")
    driver.stop(container=container, kill=True, timeout=0.0)
    assert jobs_running(container) == []
    assert finished(job) == 255  # wshd writes the status when it reaps, after stop returns
    assert job.status_path.read_text() == "signal 9\n"
    assert is_alive(container.run_dir)


def test_check_host_refuses_user_namespaces_where_the_kernel_refuses_them(monkeypatch) -> None:
    settings = settings_from_dict({"server": {"wshd_path": "/bin/true"}})
    assert kernel.user_namespace_refusal() is None  # this kernel has them: the real probe
    monkeypatch.setattr(kernel, "user_namespace_refusal", lambda: "No space left on device")
    with pytest.raises(DriverUnavailable, match=r"^wshd: the kernel refuses a new user namespace "
                                                r"\(No space left on device\); set user.namespaces: false"):
        WshdDriver.check_host(settings)
    off = settings_from_dict({"server": {"wshd_path": "/bin/true"}, "user": {"namespaces": False}})
    assert WshdDriver.check_host(off) is None
